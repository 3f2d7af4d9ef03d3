"""Networks: timm backbones with offline weights, the category classifier and the product embedder."""

from snapsearch.models.backbone import create_backbone
from snapsearch.models.weights import WEIGHT_SOURCES

__all__ = ["WEIGHT_SOURCES", "create_backbone"]
