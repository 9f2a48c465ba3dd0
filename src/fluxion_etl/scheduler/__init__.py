"""Firing schedules: the embedded scheduler loop, and the one path every fire takes.

``fires.deliver_fire`` answers a fire whoever delivers it (the embedded loop, EventBridge through
the API, a crontab line through the CLI); ``embedded.EmbeddedScheduler`` is the loop that
``FLUXION_SCHEDULER=embedded`` runs inside ``serve``.
"""
