"""fluxion-etl: keeps a retail chain's inventory and sales fresh from its KLK POS system."""

__version__ = "0.1.0"
