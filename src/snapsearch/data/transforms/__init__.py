"""Custom albumentations transforms that push catalog images towards the look of shopper photos."""

from snapsearch.data.transforms.clutter import BackgroundClutter
from snapsearch.data.transforms.composite import SceneComposite
from snapsearch.data.transforms.glare import SpecularGlare
from snapsearch.data.transforms.mask import PackshotMask
from snapsearch.data.transforms.scenes import ScenePhotos

__all__ = ["BackgroundClutter", "PackshotMask", "SceneComposite", "ScenePhotos", "SpecularGlare"]
