"""Render a letter's subject, HTML and text bodies from its jinja2 templates.

Files: ``templates/<LetterName>/<locale>/{subject.txt,body.html,body.txt}``, bodies extending the
shared ``_layout.html`` / ``_layout.txt``. How to add a letter, the context keys and the filters:
docs/templates.md.

- A sandbox (``ImmutableSandboxedEnvironment``: no private attributes, no mutating calls) with
  ``StrictUndefined``: a missing variable is an error, never an empty string.
- Autoescape on for ``.html``, off for ``.txt`` (text body and subject).
- Templates are compiled once per process and kept (``auto_reload=False``).
- Locale fallback: the requested locale (``ru``, ``ru-RU`` and ``ru_RU`` all mean ``ru``), else
  ``en``.
- Every failure (unknown letter, syntax error, missing variable, bad filter input) is a
  :class:`TemplateRenderError`, a permanent failure of the letter, with a message naming the
  letter, locale, file and cause.

Templates get the context as given plus ``locale`` (the locale actually rendered) and, in the
bodies, ``subject`` (the rendered subject line).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from notifier.events.processing import PermanentEventError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_LOCALE = "en"
PARTS = ("subject.txt", "body.html", "body.txt")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    html: str
    text: str
    locale: str = DEFAULT_LOCALE  # the locale actually rendered (after fallback)


class TemplateRenderError(PermanentEventError):
    """The letter cannot be rendered; permanent (fix the template or the context, then resend)."""

    def __init__(
        self, message: str, *, letter: str, locale: str | None = None, file: str | None = None
    ) -> None:
        super().__init__(message)
        self.letter = letter
        self.locale = locale
        self.file = file

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_error, (self.args, self.__dict__))


def _restore_error(args: tuple[Any, ...], state: dict[str, Any]) -> TemplateRenderError:
    error = TemplateRenderError.__new__(TemplateRenderError)
    error.args = args
    error.__dict__.update(state)
    return error


# --- filters -----------------------------------------------------------------------------------

_CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€", "KZT": "₸", "BYN": "Br"}
_MONTHS = {
    "ru": (
        "января", "февраля", "марта", "апреля", "мая", "июня",
        "июля", "августа", "сентября", "октября", "ноября", "декабря",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}  # fmt: skip


def format_money(amount: Any, currency: str, locale: str) -> str:
    """``ru``: ``1 234,56 ₽``; other locales: ``RUB 1,234.56``. Rounded half-up to kopecks."""
    if isinstance(amount, bool):
        raise ValueError(f"money: not an amount: {amount!r}")
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"money: not an amount: {amount!r}") from exc
    code = str(currency).upper()
    sign = "-" if value < 0 else ""
    grouped = f"{abs(value):,.2f}"  # 1,234.56
    if locale == "ru":
        number = grouped.replace(",", " ").replace(".", ",")
        return f"{sign}{number} {_CURRENCY_SIGNS.get(code, code)}"
    return f"{code} {sign}{grouped}"


@pass_context
def money(ctx: Context, amount: Any, currency: str = "RUB", locale: str | None = None) -> str:
    """``{{ balance.amount|money(balance.currency) }}`` in the letter's locale."""
    return format_money(amount, currency, locale or ctx.get("locale") or DEFAULT_LOCALE)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def format_date_local(value: Any, tz: str, locale: str, *, with_time: bool = True) -> str:
    """``5 марта 2026, 11:00`` / ``5 March 2026, 11:00`` in time zone ``tz``; naive = UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        local = moment.astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"date_local: unknown time zone {tz!r}") from exc
    month = _MONTHS.get(locale, _MONTHS["en"])[local.month - 1]
    text = f"{local.day} {month} {local.year}"
    return f"{text}, {local:%H:%M}" if with_time else text


@pass_context
def date_local(
    ctx: Context,
    value: Any,
    tz: str | None = None,
    locale: str | None = None,
    with_time: bool = True,
) -> str:
    """``{{ event.occurred_at|date_local }}``: the client's time zone and the letter's locale
    unless given."""
    zone = tz or _field(ctx.get("client"), "timezone") or "UTC"
    return format_date_local(
        value, zone, locale or ctx.get("locale") or DEFAULT_LOCALE, with_time=with_time
    )


def plural(n: Any, *forms: str) -> str:
    """``{{ n|plural("day", "days") }}`` or ``{{ n|plural("день", "дня", "дней") }}``."""
    count = abs(int(n))
    if len(forms) == 2:
        return forms[0] if count == 1 else forms[1]
    if len(forms) != 3:
        raise ValueError("plural: give 2 (en) or 3 (ru: один, два, пять) forms")
    if count % 10 == 1 and count % 100 != 11:
        return forms[0]
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return forms[1]
    return forms[2]


# --- environment and rendering -------------------------------------------------------------------


#: names an exact ``dict`` has as attributes (instances have no ``__dict__``): ``a.b`` on a
#: dict finds the attribute only for these, otherwise jinja falls back to the key
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _LetterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with two shortcuts that keep its results and its checks (decision 0046).

    - ``make_globals`` gives each template a flat dict of the (never changed) environment
      globals instead of jinja's ``ChainMap``: every render copies the globals into its context
      and every ``{% from ... import %}`` compares key sets, both slow over a ``ChainMap``.
    - ``getattr`` on an exact ``dict`` (all letter context is JSON) whose class has no such
      attribute goes straight to the key, where jinja would first raise and catch an
      ``AttributeError``. Any other object, and names like ``items`` or ``get``, take the
      sandbox's own path (attribute first, safety checks)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        #: template name -> compiled template (decision 0065), for ``get_template``
        self.templates: dict[str, Template] = {}
        #: (letter, requested locale) -> the locale rendered
        self.resolved: dict[tuple[str, str | None], str] = {}

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}

    def get_template(
        self,
        name: str | Template,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> Template:
        """jinja's ``get_template`` answered from a plain dict once a name is loaded (decision
        0065): every render looks up its parts, its layout (``extends``) and the macros
        (``from ... import``), and jinja's own cache builds a weak-reference key per lookup.
        Same templates: compiled once, never reloaded (``auto_reload=False``, unbounded cache),
        and ``join_path`` is jinja's (the name as given)."""
        if globals is None and type(name) is str:
            template = self.templates.get(name)
            if template is None:
                template = super().get_template(name, parent)
                self.templates[name] = template
            return template
        return super().get_template(name, parent, globals)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A template's own macro (``{{ button(...) }}``) is called directly: the sandbox's
        ``is_safe_callable`` and jinja's ``Context.call`` look up ``unsafe_callable``,
        ``alters_data`` and ``jinja_pass_arg`` on it, which a ``Macro`` never has, so they
        would call it the same way (decision 0065). Anything else goes through the sandbox."""
        if type(__obj) is Macro:
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
            try:
                return __obj(*args, **kwargs)
            except StopIteration:
                return __self.undefined(
                    "value was undefined because a callable raised a StopIteration exception"
                )
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except LookupError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _environment() -> _LetterEnvironment:
    env = _LetterEnvironment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        # asked for every render's context: answered once per template name (decision 0065)
        autoescape=functools.lru_cache(maxsize=1024)(
            select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False)
        ),
        auto_reload=False,
        cache_size=-1,  # keep every compiled template
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, date_local=date_local, plural=plural)
    return env


_env = _environment()


@functools.cache
def template_names() -> list[str]:
    """Letters that have templates (directories not starting with ``_``), sorted."""
    return sorted(
        p.name
        for p in TEMPLATES_DIR.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and _locales(p.name)
    )


def available_locales(letter_name: str) -> list[str]:
    """Locales with all three files for ``letter_name``; ``[]`` for an unknown letter."""
    if letter_name not in template_names():
        return []
    return list(_locales(letter_name))


@functools.cache
def _locales(letter_name: str) -> tuple[str, ...]:
    root = TEMPLATES_DIR / letter_name
    return tuple(
        sorted(
            p.name for p in root.iterdir() if p.is_dir() and all((p / f).is_file() for f in PARTS)
        )
    )


def resolve_locale(letter_name: str, locale: str | None) -> str:
    """The locale that will be rendered: exact, then its language, then ``en``."""
    available = available_locales(letter_name)
    if not available:
        raise TemplateRenderError(
            f"letter {letter_name!r}: no templates (known: {', '.join(template_names())})",
            letter=letter_name,
            locale=locale,
        )
    wanted = (locale or "").strip().lower().replace("_", "-")
    for candidate in (wanted, wanted.split("-")[0], DEFAULT_LOCALE):
        if candidate in available:
            return candidate
    raise TemplateRenderError(
        f"letter {letter_name!r}: no templates for locale {locale!r} nor {DEFAULT_LOCALE!r} "
        f"(has {', '.join(available)})",
        letter=letter_name,
        locale=locale,
    )


def render(letter_name: str, locale: str, context: Mapping[str, Any]) -> Rendered:
    """Subject, HTML and text of ``letter_name`` in ``locale`` (or ``en``) for ``context``."""
    env = _env
    resolved = env.resolved.get((letter_name, locale))
    if resolved is None:
        resolved = resolve_locale(letter_name, locale)
        if len(env.resolved) >= 1024:  # locales come from letters: never let odd ones pile up
            env.resolved.clear()
        env.resolved[(letter_name, locale)] = resolved
    variables = {**context, "locale": resolved}
    subject = _render_part(letter_name, resolved, "subject.txt", variables).strip()
    if not subject or "\n" in subject or "\r" in subject:
        raise TemplateRenderError(
            f"{letter_name}/{resolved}/subject.txt: the subject must be one non-empty line, "
            f"got {subject[:120]!r}",
            letter=letter_name,
            locale=resolved,
            file="subject.txt",
        )
    variables["subject"] = subject
    html = _render_part(letter_name, resolved, "body.html", variables)
    text = _render_part(letter_name, resolved, "body.txt", variables).strip() + "\n"
    return Rendered(subject=subject, html=html, text=text, locale=resolved)


def compile_all() -> int:
    """Compile every template now (startup / CI check); returns how many. Raises on a bad one."""
    count = 0
    for name in sorted(_env.list_templates(extensions=("html", "txt"))):
        letter = name.split("/")[0]
        try:
            _env.get_template(name)
        except TemplateError as exc:
            raise _error(exc, letter=letter, locale=None, name=name) from exc
        count += 1
    return count


def _render_part(letter: str, locale: str, part: str, variables: dict[str, Any]) -> str:
    """``Template.render(variables)`` without its copy of ``variables`` (the context copies
    them with the globals anyway)."""
    name = f"{letter}/{locale}/{part}"
    try:
        template = _env.get_template(name)
        try:
            return "".join(template.root_render_func(template.new_context(variables)))
        except Exception:
            _env.handle_exception()  # jinja's traceback rewrite: template lines, as render does
    except Exception as exc:  # a template must never crash the worker
        raise _error(exc, letter=letter, locale=locale, name=name) from exc


def _error(exc: Exception, *, letter: str, locale: str | None, name: str) -> TemplateRenderError:
    where = _location(exc) or name
    if isinstance(exc, TemplateSyntaxError):
        where = f"{exc.name or exc.filename or name}:{exc.lineno}"
        cause = f"syntax error: {exc.message}"
    elif isinstance(exc, UndefinedError):
        cause = f"missing variable: {exc.message}"
    elif isinstance(exc, TemplateNotFound):
        cause = f"template not found: {exc.name}"
    elif isinstance(exc, SecurityError):
        cause = f"unsafe operation blocked by the sandbox: {exc}"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return TemplateRenderError(
        f"letter {letter} [{locale}] {where}: {cause}",
        letter=letter,
        locale=locale,
        file=name.rsplit("/", 1)[-1] if name.startswith(f"{letter}/") else name,
    )


def _location(exc: BaseException) -> str | None:
    """``<template>:<line>`` of the innermost template frame (jinja rewrites tracebacks)."""
    found: str | None = None
    tb: TracebackType | None = exc.__traceback__
    root = str(TEMPLATES_DIR)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root):
            found = f"{Path(filename).relative_to(root).as_posix()}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found
