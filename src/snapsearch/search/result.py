"""What a search returns: typed, JSON-ready, the same for the CLI, the service, the page and the evaluator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("decode", "classify", "embed", "search")


@dataclass(frozen=True)
class ProductHit:
    """One ranked product: its best-matching catalog image's score (higher is more similar)."""

    rank: int
    product_id: str
    name: str
    category: str
    score: float
    image_id: str | None


@dataclass(frozen=True)
class CategoryProbability:
    category: str
    probability: float


@dataclass(frozen=True)
class RouteTaken:
    """The partitions the strategy searched; ``fallback_to_global`` when it searched the whole pool."""

    strategy: str
    partitions: list[str]
    fallback_to_global: bool


@dataclass(frozen=True)
class Rejection:
    """ "Not in our catalog": the best product's score against the calibrated threshold."""

    score: float | None  # None: nothing was found
    threshold: float


@dataclass(frozen=True)
class TextRead:
    """The words OCR read from the photo, and whether they re-ranked the products (enough text was read)."""

    read: str
    used: bool


@dataclass
class SearchResult:
    """One photo's answer: ranked products, the gate's top categories, the route and per-stage timings.

    ``product_index`` (the products' positions in the cascade's product table) is what evaluation scores;
    it is not part of the JSON form.
    """

    products: list[ProductHit]
    categories: list[CategoryProbability]
    route: RouteTaken
    timings_ms: dict[str, float]
    rejection: Rejection | None = None
    image: dict[str, int] | None = None
    # what arrived: ``photo``, ``catalog`` or ``screenshot`` (the query-type head's call, which chose the route;
    # ``photo`` when the source has no head), or ``barcode`` (a code found in the catalog: an exact answer)
    query_type: str = "photo"
    barcode: str | None = None  # the first retail code decoded from the image, found in the catalog or not
    text: TextRead | None = None  # what OCR read (None: text search is off or OCR did not run for this query)
    product_index: list[int] = field(default_factory=list, repr=False)

    @property
    def rejected(self) -> bool:
        """True when the best product scores below the rejection threshold (or nothing was found)."""
        r = self.rejection
        return r is not None and (r.score is None or r.score < r.threshold)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("product_index")
        out["rejected"] = self.rejected
        return out
