"""The KLK point-of-sale API: an HTTP client (``client``) and pure payload decoders (``decode``)."""
