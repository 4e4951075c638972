"""SMTP provider: aiosmtplib over a small pool of persistent connections.

One email per Message, addressed to all of ``message.to``. Message-ID is generated here and is
the provider message id. SMTP replies: 4xx transient, 5xx permanent (550/551/553 on a
recipient: ``invalid_recipient``); connection failures and timeouts transient.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

import aiosmtplib
from notifier_common.logging import get_logger, mask_email
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from gateway.providers._http import load_config
from gateway.providers.base import Message, Provider, SendResult

log = get_logger("gateway.smtp")

RECIPIENT_REFUSED_CODES = frozenset({550, 551, 553})
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)


class SmtpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535, description="Default 465 with TLS, else 25.")
    username: str | None = None
    password: SecretStr | None = None
    use_tls: bool = Field(False, description="Implicit TLS (SMTPS, usually port 465).")
    start_tls: bool | Literal["auto"] = "auto"
    validate_certs: bool = True
    timeout: float = Field(10.0, gt=0, description="Seconds, per connect and per command.")
    from_address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    from_name: str | None = None
    message_id_domain: str | None = Field(None, description="Default: from_address's domain.")
    local_hostname: str | None = Field(None, description="EHLO name; default: the host's FQDN.")
    pool_size: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _tls_modes_exclusive(self) -> SmtpConfig:
        if self.use_tls and self.start_tls is True:
            raise ValueError("use_tls (implicit TLS) and start_tls=true are mutually exclusive")
        return self


class SmtpProvider(Provider):
    kind = "smtp"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.settings = load_config(SmtpConfig, kind=self.kind, name=name, config=config)
        self._domain = self.settings.message_id_domain or self.settings.from_address.split("@")[1]
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] | None = None
        self._all: list[aiosmtplib.SMTP] = []

    async def start(self) -> None:
        self._idle = asyncio.LifoQueue()  # warm connections first; idle ones stay unopened
        self._all = [self._new_client() for _ in range(self.settings.pool_size)]
        for client in self._all:
            self._idle.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._all:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        self._all = []
        self._idle = None

    async def send(self, message: Message) -> SendResult:
        recipients = [r.address or "" for r in message.to]
        bad = [mask_email(a) or "<missing>" for a in recipients if not _is_address(a)]
        if bad:
            return SendResult.permanent("invalid_recipient", f"not email addresses: {bad}")
        try:
            email = self.build_email(message)
        except ValueError as exc:
            return SendResult.permanent("invalid_message", str(exc))
        if self._idle is None:
            raise RuntimeError(f"smtp provider {self.name!r} used before start()")
        client = await self._idle.get()
        try:
            result = await self._deliver(client, email, recipients)
        except BaseException:
            client.close()  # cancelled mid-conversation: the session state is unknown
            raise
        finally:
            self._idle.put_nowait(client)
        self._log(result, recipients)
        return result

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        """Concurrent; the pool bounds how many are in flight."""
        return list(await asyncio.gather(*(self.send(m) for m in messages)))

    def build_email(self, message: Message) -> EmailMessage:
        """The MIME message; ValueError when the Message cannot become a valid email."""
        if not message.text and not message.html:
            raise ValueError("an email needs text or html content")
        email = EmailMessage()
        email["From"] = Address(self.settings.from_name or "", addr_spec=self.settings.from_address)
        email["To"] = tuple(Address(r.name or "", addr_spec=r.address or "") for r in message.to)
        email["Subject"] = message.subject or ""
        email["Date"] = format_datetime(datetime.now(UTC))
        email["Message-ID"] = make_msgid(domain=self._domain)
        if message.unsubscribe_url:
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for key, value in message.headers.items():
            if key.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {key!r} is set by the gateway")
            if "\r" in value or "\n" in value or "\r" in key or "\n" in key:
                raise ValueError(f"header {key!r} contains a line break")
            email[key] = value
        if message.text:
            email.set_content(message.text)
            if message.html:
                email.add_alternative(message.html, subtype="html")
        else:
            email.set_content(message.html or "", subtype="html")
        return email

    async def _deliver(
        self, client: aiosmtplib.SMTP, email: EmailMessage, recipients: list[str]
    ) -> SendResult:
        message_id = str(email["Message-ID"])
        reused = client.is_connected
        for attempt in (1, 2):
            try:
                if not client.is_connected:
                    await client.connect()
                refused, reply = await client.send_message(email, recipients=recipients)
            except aiosmtplib.SMTPServerDisconnected as exc:
                client.close()
                if reused and attempt == 1:  # an idle pooled connection went stale
                    continue
                return SendResult.transient("transport", f"smtp disconnected: {exc}")
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                return self._classify(client, exc)
            details: dict[str, Any] = {"reply": reply}
            if refused:
                details["refused"] = {addr: f"{r.code} {r.message}" for addr, r in refused.items()}
            return SendResult.ok(message_id, details=details)
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, client: aiosmtplib.SMTP, exc: Exception) -> SendResult:
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return _recipients_refused(exc)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return _reply_failure(exc)
        client.close()  # the connection state is unknown after a timeout or socket error
        if isinstance(exc, TimeoutError):
            return SendResult.transient("timeout", f"smtp timed out: {exc}")
        if isinstance(exc, OSError):
            return SendResult.transient("transport", f"smtp connection failed: {exc}")
        return SendResult.permanent("smtp_unsupported", f"{type(exc).__name__}: {exc}")

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        start_tls = None if s.start_tls == "auto" else s.start_tls
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            use_tls=s.use_tls,
            start_tls=False if s.use_tls else start_tls,
            validate_certs=s.validate_certs,
            timeout=s.timeout,
            local_hostname=s.local_hostname,
        )

    def _log(self, result: SendResult, recipients: list[str]) -> None:
        to = [mask_email(r) for r in recipients]
        if result.provider_message_id and result.code is None:
            log.info("gateway.smtp_sent", provider=self.name, to=to, id=result.provider_message_id)
        else:
            log.warning(
                "gateway.smtp_failed",
                provider=self.name,
                to=to,
                outcome=str(result.outcome),
                code=result.code,
                status_code=result.status_code,
            )


def _is_address(value: str) -> bool:
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return bool(address.username and address.domain)


def _reply_failure(exc: aiosmtplib.SMTPResponseException) -> SendResult:
    reason = f"{exc.code} {exc.message}"
    if 400 <= exc.code < 500:
        return SendResult.transient("smtp_4xx", reason, status_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendResult.permanent("auth_failed", reason, status_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return SendResult.permanent("sender_refused", reason, status_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return SendResult.permanent("rejected_content", reason, status_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused) and exc.code in RECIPIENT_REFUSED_CODES:
        return SendResult.permanent("invalid_recipient", reason, status_code=exc.code)
    return SendResult.permanent("smtp_5xx", reason, status_code=exc.code)


def _recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> SendResult:
    """Every recipient refused: transient if any refusal was temporary, else permanent."""
    details = {"refused": {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}}
    temporary = [r for r in exc.recipients if 400 <= r.code < 500]
    first = temporary[0] if temporary else exc.recipients[0]
    reason = f"all recipients refused: {first.code} {first.message}"
    if temporary:
        return SendResult.transient("smtp_4xx", reason, status_code=first.code, details=details)
    code = "invalid_recipient" if first.code in RECIPIENT_REFUSED_CODES else "smtp_5xx"
    return SendResult.permanent(code, reason, status_code=first.code, details=details)
