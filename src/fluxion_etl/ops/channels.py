"""Where alert messages go: email over SMTP, a webhook, and the dead-man ping.

    channels_from_config(alerts, *, env, http) -> list[Channel]     (ConfigError when incomplete)
    Channel.send(message)                                           raises AlertDeliveryError
    ping_deadman(url, *, http) -> str | None                        None when the ping went through

Contract of a channel: ``name`` identifies it in the record of sent messages; ``send`` delivers one
``Message`` or raises ``AlertDeliveryError`` saying why (it never raises anything else, so one
broken channel does not stop the others).

Configured in the configuration file (``[[alerts.channels]]``); secrets come from the environment:
an SMTP password is read from the variable named by ``password_env``, never from the file.

- ``smtp``: ``host``, ``port`` (587 with ``starttls = true``, else 25), ``sender``,
  ``recipients``, optional ``username`` and ``password_env``.
- ``webhook``: ``url``; the JSON body is Slack-compatible (``{"text": ...}``) and carries the
  structured alert under ``"fluxion"`` for any other receiver.

The dead-man URL (``alerts.deadman_url``) is fetched (GET) after each healthy evaluation, so an
outside monitor (healthchecks.io, a cron monitor) notices when the whole service stops.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import httpx

from fluxion_etl.config import AlertChannelModel, AlertsModel
from fluxion_etl.errors import AlertDeliveryError, ConfigError

SEND_TIMEOUT = 15.0
SOURCE = "alerts"


@dataclass(frozen=True, slots=True)
class Message:
    """One message: ``kind`` is alert, recovery, summary (several at once) or digest."""

    kind: str
    subject: str
    text: str
    sent_at: datetime
    alert_ids: tuple[int, ...] = ()
    alerts: tuple[Mapping[str, Any], ...] = field(default=())

    def payload(self) -> dict[str, Any]:
        """The webhook body: Slack's ``text`` plus the structured message."""
        return {
            "text": f"*{self.subject}*\n{self.text}",
            "fluxion": {
                "kind": self.kind,
                "subject": self.subject,
                "sent_at": self.sent_at.isoformat(),
                "alerts": [dict(a) for a in self.alerts],
            },
        }


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, message: Message) -> None: ...


@dataclass
class SmtpChannel:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = SEND_TIMEOUT

    @property
    def name(self) -> str:
        return f"smtp:{self.host}:{self.port}"

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(message.sent_at.timestamp(), usegmt=True)
        mail["Message-ID"] = make_msgid(domain="fluxion-etl")
        mail.set_content(message.text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertDeliveryError(self.name, f"{type(exc).__name__}: {exc}") from exc


@dataclass
class WebhookChannel:
    url: str
    http: httpx.Client

    @property
    def name(self) -> str:
        parts = httpx.URL(self.url)
        return f"webhook:{parts.host}"  # never the path: Slack's carries the secret

    def send(self, message: Message) -> None:
        try:
            answer = self.http.post(self.url, json=message.payload(), timeout=SEND_TIMEOUT)
        except httpx.HTTPError as exc:
            reason = without_url(f"{type(exc).__name__}: {exc}", self.url)
            raise AlertDeliveryError(self.name, reason) from exc
        if not answer.is_success:
            reason = without_url(f"HTTP {answer.status_code}: {answer.text[:200]}", self.url)
            raise AlertDeliveryError(self.name, reason)


def without_url(text: str, url: str) -> str:
    """``text`` (an error, a receiver's answer) with ``url`` and its path blanked out: the path of
    a webhook or dead-man URL is its secret, and receivers echo it ("Cannot POST /hooks/...")."""
    parsed = httpx.URL(url)
    for secret in (url, str(parsed.raw_path, "ascii"), parsed.path):
        if len(secret) > 1:
            text = text.replace(secret, "<url>")
    return text


def channels_from_config(
    alerts: AlertsModel, *, env: Mapping[str, str], http: httpx.Client
) -> list[Channel]:
    """The configured channels, checked: a channel that cannot work is a configuration error."""
    return [_channel(i, model, env, http) for i, model in enumerate(alerts.channels)]


def _channel(
    index: int, model: AlertChannelModel, env: Mapping[str, str], http: httpx.Client
) -> Channel:
    key = f"alerts.channels[{index}]"
    if model.kind == "webhook":
        if not model.url or not model.url.startswith(("http://", "https://")):
            raise ConfigError(SOURCE, f"{key}.url", model.url, "a webhook needs an http(s) url")
        return WebhookChannel(model.url, http)
    for name in ("host", "sender"):
        if not getattr(model, name):
            raise ConfigError(SOURCE, f"{key}.{name}", None, f"an smtp channel needs {name}")
    if not model.recipients:
        raise ConfigError(SOURCE, f"{key}.recipients", [], "give at least one address")
    assert model.host is not None
    assert model.sender is not None
    return SmtpChannel(
        host=model.host,
        port=model.port or (587 if model.starttls else 25),
        sender=model.sender,
        recipients=tuple(model.recipients),
        username=model.username,
        password=_password(model, env, key),
        starttls=model.starttls,
    )


def _password(model: AlertChannelModel, env: Mapping[str, str], key: str) -> str | None:
    if model.password_env is None:
        return None
    value = env.get(model.password_env)
    if not value:
        raise ConfigError(
            SOURCE,
            f"{key}.password_env",
            model.password_env,
            f"set the environment variable {model.password_env} to the SMTP password",
        )
    return value


def ping_deadman(url: str, *, http: httpx.Client) -> str | None:
    """Tell the outside monitor this service is alive; the error text when that failed."""
    try:
        answer = http.get(url, timeout=SEND_TIMEOUT)
    except httpx.HTTPError as exc:
        return without_url(f"{type(exc).__name__}: {exc}", url)
    return None if answer.is_success else f"HTTP {answer.status_code}"


def deliver(channels: list[Channel], message: Message) -> dict[str, str]:
    """Send to every channel; per channel ``ok`` or why it failed."""
    results: dict[str, str] = {}
    for channel in channels:
        try:
            channel.send(message)
        except AlertDeliveryError as exc:
            results[channel.name] = exc.reason
        else:
            results[channel.name] = "ok"
    return results
