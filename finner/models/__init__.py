"""Compact NER models behind one interface (`NerModel`): GLiNER, SpanMarker, and baselines."""
