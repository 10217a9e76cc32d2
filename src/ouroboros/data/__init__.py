from ouroboros.data.imageset import ImageSet
from ouroboros.data.loaders import load_dataset

__all__ = ["ImageSet", "load_dataset"]
