"""The one runner (SPEC §4.1) and the inventory and sales pipelines it drives."""
