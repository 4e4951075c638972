"""SMTP provider: aiosmtplib over a small pool of persistent connections.

One email per Message, addressed to all of ``message.to``. Message-ID is generated here and is
the provider message id. SMTP replies: 4xx transient, 5xx permanent (550/551/553 on a
recipient: ``invalid_recipient``); connection failures and timeouts transient.

The MIME bytes are written here (:func:`render_mime`, 7-bit: RFC 2047 headers, base64 bodies
unless plain ASCII) and handed to ``sendmail``: ``EmailMessage`` with the default policy plus
aiosmtplib's flattening cost ~17 ms of CPU per message, which capped a gateway at ~60 emails/s
(decision 0052). ``EmailMessage`` remains the path for non-ASCII addresses (SMTPUTF8).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
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
        from_name = self.settings.from_name or ""
        if "\r" in from_name or "\n" in from_name:
            raise ValueError(f"smtp provider {name!r}: from_name contains a line break")
        self._from_header: str | None = (
            formataddr((from_name, self.settings.from_address), charset="utf-8")
            if self.settings.from_address.isascii()
            else None
        )
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
            message_id, payload = self.render(message)
        except ValueError as exc:
            return SendResult.permanent("invalid_message", str(exc))
        if self._idle is None:
            raise RuntimeError(f"smtp provider {self.name!r} used before start()")
        client = await self._idle.get()
        try:
            result = await self._deliver(client, message_id, payload, recipients)
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

    def render(self, message: Message) -> tuple[str, bytes | EmailMessage]:
        """(Message-ID, what to send): 7-bit MIME bytes, or an ``EmailMessage`` when an address
        is not ASCII (SMTPUTF8). ValueError when the Message cannot become a valid email."""
        _check(message)
        message_id = make_msgid(domain=self._domain)
        if self._from_header is None or not all((r.address or "").isascii() for r in message.to):
            email = self.build_email(message)
            email.replace_header("Message-ID", message_id)
            return message_id, email
        return message_id, render_mime(
            message,
            from_header=self._from_header,
            date=format_datetime(datetime.now(UTC)),
            message_id=message_id,
        )

    def build_email(self, message: Message) -> EmailMessage:
        """The MIME message as an ``EmailMessage``; ValueError when the Message cannot become a
        valid email."""
        _check(message)
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
            email[key] = value
        if message.text:
            email.set_content(message.text)
            if message.html:
                email.add_alternative(message.html, subtype="html")
        else:
            email.set_content(message.html or "", subtype="html")
        return email

    async def _deliver(
        self,
        client: aiosmtplib.SMTP,
        message_id: str,
        payload: bytes | EmailMessage,
        recipients: list[str],
    ) -> SendResult:
        reused = client.is_connected
        for attempt in (1, 2):
            try:
                if not client.is_connected:
                    await client.connect()
                if isinstance(payload, bytes):
                    refused, reply = await client.sendmail(
                        self.settings.from_address, recipients, payload
                    )
                else:
                    refused, reply = await client.send_message(payload, recipients=recipients)
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
        accepted = bool(result.provider_message_id) and result.code is None
        if accepted and not logging.getLogger("gateway").isEnabledFor(logging.DEBUG):
            return
        to = [mask_email(r) for r in recipients]
        if accepted:
            # the messages table records accepted sends; one info line each cost ~4 % of a drain
            log.debug("gateway.smtp_sent", provider=self.name, to=to, id=result.provider_message_id)
        else:
            log.warning(
                "gateway.smtp_failed",
                provider=self.name,
                to=to,
                outcome=str(result.outcome),
                code=result.code,
                status_code=result.status_code,
            )


_LINE_LIMIT = 998  # RFC 5322: characters per line, without CRLF
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':'
# dot-atom addresses (what nearly every recipient is) are checked without the header parser
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _check(message: Message) -> None:
    """ValueError for what no email can carry (checked before either way of building one)."""
    if not message.text and not message.html:
        raise ValueError("an email needs text or html content")
    for value in (message.subject, message.unsubscribe_url, *(r.name for r in message.to)):
        if value and ("\r" in value or "\n" in value):
            raise ValueError("subject, recipient names and unsubscribe_url must be one line")
    for key, value in message.headers.items():
        if key.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {key!r} is set by the gateway")
        if "\r" in value or "\n" in value or "\r" in key or "\n" in key:
            raise ValueError(f"header {key!r} contains a line break")
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"header name {key!r} is not printable ASCII without ':'")


def _header(name: str, value: str) -> bytes:
    """``Name: value`` folded, non-ASCII as RFC 2047 encoded words."""
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}".encode("ascii")
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}".encode("ascii")


def _body(content: str, subtype: str) -> bytes:
    """One text part: 7bit when it is short-lined ASCII, else base64 of its UTF-8."""
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode("ascii")
    if content.isascii() and "\x00" not in content:
        lines = content.splitlines()
        if max(map(len, lines), default=0) <= _LINE_LIMIT:
            return (
                head
                + b"Content-Transfer-Encoding: 7bit\r\n\r\n"
                + ("\r\n".join(lines).encode("ascii") + b"\r\n")
            )
    encoded = base64.encodebytes(content.encode("utf-8")).replace(b"\n", b"\r\n")
    return head + b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded


def render_mime(message: Message, *, from_header: str, date: str, message_id: str) -> bytes:
    """The email as 7-bit MIME bytes with CRLF line ends (``message`` passed :func:`_check`,
    every address is ASCII): text/plain, text/html, or multipart/alternative of both."""
    to = ",\r\n ".join(
        formataddr((r.name or "", r.address or ""), charset="utf-8") for r in message.to
    )
    lines = [
        b"From: " + from_header.encode("ascii"),
        b"To: " + to.encode("ascii"),
        _header("Subject", message.subject or ""),
        b"Date: " + date.encode("ascii"),
        b"Message-ID: " + message_id.encode("ascii"),
    ]
    if message.unsubscribe_url:
        lines.append(_header("List-Unsubscribe", f"<{message.unsubscribe_url}>"))
        lines.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    lines.extend(_header(key, value) for key, value in message.headers.items())
    lines.append(b"MIME-Version: 1.0")
    head = b"\r\n".join(lines) + b"\r\n"
    if message.text and message.html:
        boundary = f"=_{uuid.uuid4().hex}".encode("ascii")
        return (
            head
            + b'Content-Type: multipart/alternative; boundary="'
            + boundary
            + b'"\r\n\r\n--'
            + boundary
            + b"\r\n"
            + _body(message.text, "plain")
            + b"--"
            + boundary
            + b"\r\n"
            + _body(message.html, "html")
            + b"--"
            + boundary
            + b"--\r\n"
        )
    if message.text:
        return head + _body(message.text, "plain")
    return head + _body(message.html or "", "html")


def _is_address(value: str) -> bool:
    if _SIMPLE_ADDRESS.fullmatch(value):
        return True
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
