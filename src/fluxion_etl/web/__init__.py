"""The control centre: web pages served by the service (``routes.mount_web``)."""
