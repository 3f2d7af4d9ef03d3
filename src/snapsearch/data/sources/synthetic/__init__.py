"""The embedded synthetic shop: a zero-download data source, so ``train.py`` runs anywhere.

Each category is a product *shape family* (bottle, box, can, fruit, bag, jar, carton, tube) with its own
hue band and, when shapes repeat, its own surface texture: a category classifier has shape and colour to
learn. Each product inside a category has its own colours, label, print pattern and logo glyph: an
embedder has product-level detail to learn. Catalog images show the product upright on pure white under
even light (PNG); user photos show it warped, in clutter, badly lit, blurred, noisy, partly hidden and
saved as low-quality JPEG, so the two domains differ the way shop images and phone photos do.

Generated once per parameter set into ``root/<hash of params>/`` (a few seconds at the default size) and
reused from there. The folder appears in one rename with its manifest and completion marker written last,
so an interrupted generation is redone, never half-used. Every image draws from its own numpy Generator
seeded from ``seed`` and its ids: the same parameters give byte-identical files, in any order.

Modules, each one job: ``specs`` (categories, products, seeding), ``draw`` (mask and colour primitives),
``shapes`` and ``sprites`` (the product drawn), ``backgrounds`` and ``photos`` (catalog image and the
phone-photo look), ``cache`` (the folder on disk) and ``shop`` (the data source itself).
"""

from snapsearch.data.sources.synthetic.cache import COMPLETE_MARKER, MANIFEST_NAME
from snapsearch.data.sources.synthetic.shop import make_synthetic_shop

__all__ = ["COMPLETE_MARKER", "MANIFEST_NAME", "make_synthetic_shop"]
