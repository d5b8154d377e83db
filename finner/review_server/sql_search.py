"""A search engine for argilla-server that answers from the server's own SQL database.

argilla-server delegates listing, filtering, sorting and progress counts to a pluggable
`SearchEngine` (Elasticsearch or OpenSearch in production). This one reads the records,
responses and suggestions of a dataset straight from the database the server already keeps
(SQLite here) and evaluates the query in Python, so the stock server runs without a search
cluster. Its write hooks are no-ops: the database is the index. Meant for datasets of a few
thousand to tens of thousands of records, the size of a human review round.

This module runs inside the argilla-server environment (see `serve.py`), never in finner's:
it imports only argilla_server and SQLAlchemy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Union
from uuid import UUID

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SimilarityOrder, SortOrder
from argilla_server.models import (
    Dataset,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    VectorSettings,
)
from argilla_server.search_engine import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import select

ENGINE_NAME = "sql"
WORD = re.compile(r"\w+")


@dataclass
class _Doc:
    """One record as the engine sees it: what ES would have indexed."""

    id: UUID
    external_id: Optional[str]
    fields: dict
    metadata: dict
    status: str
    inserted_at: Any
    updated_at: Any
    responses: list = field(default_factory=list)  # (user_id, status, values)
    suggestions: dict = field(default_factory=dict)  # question name -> {value, score, agent, type}

    def record_property(self, name: str) -> Any:
        return {
            "id": str(self.id),
            "external_id": self.external_id,
            "status": self.status,
            "inserted_at": self.inserted_at,
            "updated_at": self.updated_at,
        }.get(name)

    def responses_of(self, user: Optional[User]) -> list:
        return [r for r in self.responses if user is None or r[0] == user.id]


async def _load(dataset_id: UUID) -> list[_Doc]:
    """Records of a dataset with their responses and suggestions, in insertion order."""
    async with AsyncSessionLocal() as db:
        rows = await db.execute(
            select(
                Record.id, Record.external_id, Record.fields, Record.metadata_, Record.status,
                Record.inserted_at, Record.updated_at,
            ).where(Record.dataset_id == dataset_id)
        )
        docs = {
            r.id: _Doc(r.id, r.external_id, r.fields or {}, r.metadata_ or {}, str(r.status), r.inserted_at, r.updated_at)
            for r in rows
        }
        responses = await db.execute(
            select(Response.record_id, Response.user_id, Response.status, Response.values)
            .join(Record, Response.record_id == Record.id)
            .where(Record.dataset_id == dataset_id)
        )
        for r in responses:
            docs[r.record_id].responses.append((r.user_id, str(r.status), r.values or {}))
        suggestions = await db.execute(
            select(Suggestion.record_id, Question.name, Suggestion.value, Suggestion.score, Suggestion.agent, Suggestion.type)
            .join(Record, Suggestion.record_id == Record.id)
            .join(Question, Suggestion.question_id == Question.id)
            .where(Record.dataset_id == dataset_id)
        )
        for s in suggestions:
            docs[s.record_id].suggestions[s.name] = {
                "value": s.value, "score": s.score, "agent": s.agent, "type": str(s.type) if s.type else None
            }
    return sorted(docs.values(), key=lambda d: d.inserted_at)


def _terms_match(value: Any, terms: list[str]) -> bool:
    """ES `terms` on a keyword field: a list value matches when any element does."""
    values = value if isinstance(value, list) else [value]
    wanted = {str(t) for t in terms}
    return any(v is not None and str(v) in wanted for v in values)


def _range_match(value: Any, ge: Optional[float], le: Optional[float]) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(
        isinstance(v, (int, float)) and (ge is None or v >= ge) and (le is None or v <= le) for v in values
    )


def _scope_values(doc: _Doc, scope: Any) -> list:
    """The values a filter or sort scope reads from a record (several for responses)."""
    if isinstance(scope, MetadataFilterScope):
        return [doc.metadata.get(scope.metadata_property)]
    if isinstance(scope, SuggestionFilterScope):
        return [doc.suggestions.get(scope.question, {}).get(scope.property)]
    if isinstance(scope, RecordFilterScope):
        return [doc.record_property(scope.property)]
    if isinstance(scope, ResponseFilterScope):
        responses = doc.responses_of(scope.user)
        if scope.question:
            return [(values.get(scope.question) or {}).get("value") for _, _, values in responses]
        return [status for _, status, _ in responses]
    raise ValueError(f"Cannot process request for search scope {scope}")


def _status_match(doc: _Doc, filter: TermsFilter) -> bool:
    """Response status filter; `pending` means no response (of that user, when one is given)."""
    statuses = [str(v) for v in filter.values]
    responses = doc.responses_of(filter.scope.user)
    if ResponseStatusFilter.pending in statuses and not responses:
        return True
    return any(status in statuses for _, status, _ in responses)


def _matches(doc: _Doc, filter: Filter) -> bool:
    if isinstance(filter, AndFilter):
        return all(_matches(doc, f) for f in filter.filters)
    scope = filter.scope
    if isinstance(scope, ResponseFilterScope) and not scope.question:
        if scope.property == "status" and isinstance(filter, TermsFilter):
            return _status_match(doc, filter)
        raise ValueError(f"Cannot process filter scope {scope}")
    values = _scope_values(doc, scope)
    if isinstance(filter, TermsFilter):
        return any(_terms_match(v, filter.values) for v in values)
    if isinstance(filter, RangeFilter):
        return any(_range_match(v, filter.ge, filter.le) for v in values)
    raise ValueError(f"Cannot process request for filter {filter}")


def _text_score(doc: _Doc, query: TextQuery) -> float:
    """All query words must occur (ES simple_query_string with AND); the score counts occurrences."""
    terms = [t.casefold() for t in WORD.findall(query.q)]
    texts = [doc.fields.get(query.field)] if query.field else list(doc.fields.values())
    words: list[str] = []
    for text in texts:
        if isinstance(text, list):  # chat fields: messages with "content"
            text = " ".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in text)
        if text is not None:
            words.extend(w.casefold() for w in WORD.findall(str(text)))
    if not terms or any(t not in words for t in terms):
        return 0.0
    return float(sum(words.count(t) for t in terms))


def _sort(docs: list[_Doc], sort: List[Order]) -> list[_Doc]:
    """Stable multi-key sort; records without a value go last in either direction, as in ES."""
    for order in reversed(sort):
        def key(doc: _Doc, scope=order.scope) -> Any:
            present = [v for v in _scope_values(doc, scope) if v is not None]
            return present[0] if present else None

        with_value = [d for d in docs if key(d) is not None]
        without = [d for d in docs if key(d) is None]
        with_value.sort(key=key, reverse=order.order == SortOrder.desc)
        docs = with_value + without
    return docs


def _terms_metrics(values: Iterable[Any]) -> TermsMetrics:
    counts: dict[str, int] = {}
    for value in values:
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                counts[str(v)] = counts.get(str(v), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return TermsMetrics(total=sum(counts.values()), values=[TermsMetrics.TermCount(term=t, count=c) for t, c in ranked])


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    """Searches over the server's SQL database; every index write is a no-op."""

    @classmethod
    async def new_instance(cls) -> "SQLSearchEngine":
        return cls()

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "backend": "argilla-server database"}

    # The database is the index: nothing to create, update or delete.
    async def create_index(self, dataset: Dataset) -> None:
        pass

    async def delete_index(self, dataset: Dataset) -> None:
        pass

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        pass

    async def partial_record_update(self, record: Record, **update) -> None:
        pass

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        pass

    async def update_record_response(self, response: Response) -> None:
        pass

    async def delete_record_response(self, response: Response) -> None:
        pass

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        pass

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        metrics = _terms_metrics(doc.status for doc in await _load(dataset.id))
        return {"total": metrics.total, **{m.term: m.count for m in metrics.values}}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        docs = await _load(dataset.id)
        metrics = _terms_metrics(status for doc in docs for _, status, _ in doc.responses_of(user))
        return {"total": metrics.total, **{m.term: m.count for m in metrics.values}}

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[str] = None,
    ) -> SearchResponses:
        # Unlike ES, records keep insertion order for every user (no per-user shuffle):
        # whoever pushed the records decides what is reviewed first.
        hits = self._hits(await _load(dataset.id), query, filter)
        scores = {doc.id: score for doc, score in hits}
        if sort:
            docs = _sort([doc for doc, _ in hits], sort)
        else:  # best text match first; ties (and no query) keep insertion order
            docs = [doc for doc, _ in sorted(hits, key=lambda hit: -hit[1])]
        page = docs[offset : offset + limit]
        return SearchResponses(items=[SearchResponseItem(record_id=d.id, score=scores[d.id]) for d in page], total=len(docs))

    @staticmethod
    def _hits(docs: list[_Doc], query: Optional[Union[TextQuery, str]], filter: Optional[Filter]) -> list[tuple[_Doc, float]]:
        if isinstance(query, str):
            query = TextQuery(q=query)
        hits = []
        for doc in docs:
            score = _text_score(doc, query) if query is not None else 1.0
            if score > 0 and (filter is None or _matches(doc, filter)):
                hits.append((doc, score))
        return hits

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        docs = await _load(metadata_property.dataset_id)
        values = [doc.metadata.get(metadata_property.name) for doc in docs]
        if metadata_property.type == MetadataPropertyType.terms:
            return _terms_metrics(values)
        numbers = [v for v in values if isinstance(v, (int, float))]
        cls = IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        return cls(min=min(numbers, default=None), max=max(numbers, default=None))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> SearchResponses:
        # finner's review datasets carry no vectors; say so instead of returning a wrong answer.
        raise ValueError(f"the {ENGINE_NAME!r} search engine does not support vector similarity search")
