"""The letter environment's shortcuts (decisions 0046, 0065) keep jinja's sandbox semantics."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from jinja2 import FileSystemLoader, StrictUndefined, UndefinedError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from notifier.letters import rendering
from notifier.letters.rendering import Rendered, template_names

from tests.notifier.letters.test_rendering import sample_context


def render_string(source: str, **context: Any) -> str:
    return rendering._env.from_string(source).render(context)


class TestFlatGlobals:
    def test_every_template_gets_a_plain_dict_of_globals(self) -> None:
        for letter in template_names():
            template = rendering._env.get_template(f"{letter}/en/body.html")
            assert type(template.globals) is dict
            assert "range" in template.globals  # the sandbox's safe range

    def test_the_imported_macros_still_render(self) -> None:
        out = render_string(
            '{% from "_macros.html" import button %}{{ button(u, "Pay") }}', u="https://x/?a=1&b=2"
        )
        assert '<a href="https://x/?a=1&amp;b=2"' in out  # the .html macro escapes
        assert ">Pay</a>" in out


class TestDictAttributes:
    def test_a_key_is_found_by_attribute(self) -> None:
        assert render_string("{{ c.name }}", c={"name": "Acme"}) == "Acme"

    def test_a_dict_method_still_wins_over_a_key_of_the_same_name(self) -> None:
        # jinja prefers the attribute: ``c.get`` is the method even if there is a key "get"
        assert render_string('{{ c.get("a", 1) }}', c={"get": "key", "a": 5}) == "5"
        assert render_string("{{ c['get'] }}", c={"get": "key"}) == "key"

    def test_a_missing_key_is_strictly_undefined(self) -> None:
        with pytest.raises(UndefinedError, match="'dict object' has no attribute 'nope'"):
            render_string("{{ c.nope }}", c={"name": "Acme"})

    def test_mutating_a_dict_is_still_blocked(self) -> None:
        with pytest.raises(SecurityError):
            render_string("{{ c.update(x=1) }}", c={"name": "Acme"})

    def test_a_dict_subclass_takes_the_sandbox_path(self) -> None:
        ordered = OrderedDict(name="Acme")
        assert render_string("{{ c.name }}", c=ordered) == "Acme"
        with pytest.raises(SecurityError):
            render_string("{{ c.update(x=1) }}", c=ordered)

    def test_private_names_stay_unreachable(self) -> None:
        with pytest.raises(SecurityError, match="__class__"):
            render_string("{{ c.__class__.__mro__ }}", c={"name": "Acme"})

    def test_a_plain_key_skips_the_sandbox_attribute_path(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from jinja2.sandbox import SandboxedEnvironment

        def not_expected(self: Any, obj: Any, attribute: str) -> Any:
            raise AssertionError(f"slow path for {attribute!r}")

        monkeypatch.setattr(SandboxedEnvironment, "getattr", not_expected)
        assert render_string("{{ c.client.name }}", c={"client": {"name": "Acme"}}) == "Acme"


def _reference_render(letter: str, locale: str, context: dict[str, Any]) -> Rendered:
    """What ``render`` gives through jinja's own sandbox and ``Template.render`` (no
    shortcuts: decisions 0046, 0065), for comparison."""
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(rendering.TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=rendering.money, date_local=rendering.date_local)
    env.filters.update(plural=rendering.plural)
    variables = {**context, "locale": locale}
    subject = env.get_template(f"{letter}/{locale}/subject.txt").render(variables).strip()
    variables["subject"] = subject
    html = env.get_template(f"{letter}/{locale}/body.html").render(variables)
    text = env.get_template(f"{letter}/{locale}/body.txt").render(variables).strip() + "\n"
    return Rendered(subject=subject, html=html, text=text, locale=locale)


class TestSameOutputAsJinja:
    @pytest.mark.parametrize("locale", ["ru", "en"])
    @pytest.mark.parametrize("letter", template_names())
    @pytest.mark.parametrize("service", ["taxi", "cargo"])
    def test_every_letter_renders_as_plain_jinja_renders_it(
        self, letter: str, locale: str, service: str
    ) -> None:
        context = sample_context(letter, name='Acme & "Sons" <Travel>', service=service)
        context["params"] = {"days_since": 5}
        expected = _reference_render(letter, locale, context)
        assert rendering.render(letter, locale, context) == expected
        assert rendering.render(letter, f"{locale}-XX", context) == expected  # cached locale


class TestMacroCalls:
    def test_a_macro_takes_keyword_arguments_and_escapes(self) -> None:
        out = render_string(
            '{% from "_macros.html" import button %}{{ button(label="<Pay>", url=u) }}', u="x"
        )
        assert '<a href="x"' in out
        assert ">&lt;Pay&gt;</a>" in out

    def test_a_macro_called_wrongly_fails_as_through_the_sandbox(self) -> None:
        source = '{% from "_macros.html" import button %}{{ button(u, "Pay", extra=1) }}'
        with pytest.raises(TypeError, match="extra"):
            render_string(source, u="x")

    def test_other_callables_still_go_through_the_sandbox(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[Any] = []
        original = ImmutableSandboxedEnvironment.call

        def spy(self: Any, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(obj)
            return original(self, context, obj, *args, **kwargs)

        monkeypatch.setattr(ImmutableSandboxedEnvironment, "call", spy)
        assert render_string("{{ range(3)|list }}") == "[0, 1, 2]"
        assert len(seen) == 1
        with pytest.raises(SecurityError):
            render_string("{{ c.update(x=1) }}", c={"name": "Acme"})
