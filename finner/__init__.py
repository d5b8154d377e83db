"""finner: find the companies named in financial news headlines, at feed scale.

Data flows one way, one module per stage:
source -> label -> spans/cluster/sample (curate) -> review -> models/train -> evaluate -> score.
Every stage reads and writes tables of the parquet `Store`; Ray wiring lives in `finner.pipeline` and `jobs/`.
"""

__version__ = "0.1.0"
