"""The two small HTML pages of the unsubscribe link (ru / en by the letter's locale)."""

from __future__ import annotations

from html import escape

TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "confirm": "Stop sending e-mails to {address}?",
        "button": "Unsubscribe",
        "done": "Done: {address} will receive no more e-mails from us.",
    },
    "ru": {
        "title": "Отписка",
        "confirm": "Больше не присылать письма на {address}?",
        "button": "Отписаться",
        "done": "Готово: на {address} больше не придут письма от нас.",
    },
}

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>{title}</h1>
{body}
</body></html>
"""


def language(locale: str) -> str:
    return "ru" if locale.lower().startswith("ru") else "en"


def mask(address: str) -> str:
    """``b***@example.com``: enough to recognise one's own address on a forwarded link."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


def confirm(*, locale: str, address: str, action: str) -> str:
    lang = language(locale)
    t = TEXTS[lang]
    body = (
        f"<p>{escape(t['confirm'].format(address=mask(address)))}</p>\n"
        f'<form method="post" action="{escape(action)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{escape(t["button"])}</button></form>'
    )
    return _PAGE.format(lang=lang, title=escape(t["title"]), body=body)


def done(*, locale: str, address: str) -> str:
    lang = language(locale)
    t = TEXTS[lang]
    body = f"<p>{escape(t['done'].format(address=mask(address)))}</p>"
    return _PAGE.format(lang=lang, title=escape(t["title"]), body=body)
