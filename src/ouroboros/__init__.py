"""ouroboros: simulate generated images flowing back into training data, and measure the damage."""

__version__ = "0.1.0"
