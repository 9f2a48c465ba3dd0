"""fluxion-etl: keeps a retail chain's inventory and sales fresh from its KLK point-of-sale system."""

__version__ = "0.1.0"
