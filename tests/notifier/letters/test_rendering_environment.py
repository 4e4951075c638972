"""The letter environment's shortcuts (docs/decisions/0046) keep jinja's sandbox semantics."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError
from notifier.letters import rendering
from notifier.letters.rendering import template_names


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
