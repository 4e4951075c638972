from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from notifier.events.processing import PermanentEventError
from notifier.letters import rendering
from notifier.letters.rendering import (
    Rendered,
    TemplateRenderError,
    available_locales,
    compile_all,
    format_date_local,
    format_money,
    render,
    template_names,
)

LETTERS = [
    "FirstRemindPrepaidNotice",
    "SecondRemindPrepaidNotice",
    "ThirdRemindPrepaidNotice",
    "ThirdRemindOfferNotice",
    "PrepaidFirstTakeARideNotice",
    "PrepaidSecondTakeARideNotice",
    "PostpaidFirstTakeARideNotice",
    "PostpaidSecondTakeARideNotice",
    "ActivateClientNotice",
    "CargoActivateClientNotice",
    "LimitIsOverNotice",
    "FinancialUnblockNotice",
    "LowBalanceNotice",
]
WITH_BALANCE = {"LimitIsOverNotice", "LowBalanceNotice"}
WITH_CONTRACT = {
    "FirstRemindPrepaidNotice",
    "SecondRemindPrepaidNotice",
    "ThirdRemindPrepaidNotice",
}


def sample_context(letter: str, *, name: str = "Acme Travel", **client: Any) -> dict[str, Any]:
    """Exactly the keys the letter engine guarantees, JSON-shaped as stored on the letter."""
    context: dict[str, Any] = {
        "client": {
            "id": "cl-1",
            "name": name,
            "locale": "ru",
            "timezone": "Europe/Moscow",
            "emails": ["boss@acme.example"],
            "payment_type": "prepaid",
            "service": "taxi",
            "cabinet_url": "https://corp.example.com/clients/cl-1",
            **client,
        },
        "event": {
            "id": "8a4e2f5e-3c1a-4b8e-9d1f-2f6f1d1c0a01",
            "type": "contract.created",
            "occurred_at": "2026-03-04T21:30:00+00:00",
            "payload": {},
        },
        "params": {},
        "links": {
            "cabinet_url": "https://corp.example.com/clients/cl-1",
            "payment_url": "https://corp.example.com/clients/cl-1/pay",
            "unsubscribe_url": "https://notifier.example.com/u/token",
        },
        "letter": {"name": letter, "id": 42},
    }
    if letter in WITH_BALANCE:
        context["balance"] = {
            "client_id": "cl-1",
            "contract_id": "k-1",
            "amount": "1234.5",
            "currency": "RUB",
            "threshold": "5000",
            "limit": "0",
        }
    if letter in WITH_CONTRACT:
        context["contract"] = {
            "id": "k-1",
            "client_id": "cl-1",
            "payment_type": "prepaid",
            "is_paid": False,
            "status": "active",
        }
    return context


class TestCatalogue:
    def test_all_thirteen_letters_have_templates(self) -> None:
        assert template_names() == sorted(LETTERS)

    @pytest.mark.parametrize("letter", LETTERS)
    def test_every_letter_has_ru_and_en(self, letter: str) -> None:
        assert available_locales(letter) == ["en", "ru"]

    def test_unknown_letter_has_no_locales(self) -> None:
        assert available_locales("NoSuchNotice") == []
        assert available_locales("../templates") == []

    def test_every_template_compiles(self) -> None:
        assert compile_all() >= 13 * 2 * 3


class TestRender:
    @pytest.mark.parametrize("locale", ["ru", "en"])
    @pytest.mark.parametrize("letter", template_names())
    def test_letter_renders(self, letter: str, locale: str) -> None:
        context = sample_context(letter)
        rendered = render(letter, locale, context)
        assert isinstance(rendered, Rendered)
        assert rendered.locale == locale
        assert rendered.subject
        assert "\n" not in rendered.subject
        assert "{{" not in rendered.html + rendered.text + rendered.subject
        assert rendered.html.startswith("<!doctype html>")
        assert f'<html lang="{locale}">' in rendered.html
        assert context["links"]["unsubscribe_url"] in rendered.html
        assert context["links"]["unsubscribe_url"] in rendered.text
        assert "Acme Travel" in rendered.html + rendered.subject

    @pytest.mark.parametrize("letter", sorted(WITH_BALANCE))
    def test_balance_letters_format_money(self, letter: str) -> None:
        ru = render(letter, "ru", sample_context(letter))
        en = render(letter, "en", sample_context(letter))
        assert "1 234,50 ₽" in ru.text
        assert "RUB 1,234.50" in en.text

    def test_reminder_uses_days_param_with_plural(self) -> None:
        context = sample_context("SecondRemindPrepaidNotice")
        assert "прошло 3 дня" in render("SecondRemindPrepaidNotice", "ru", context).text
        context["params"] = {"days_since": 5}
        assert "прошло 5 дней" in render("SecondRemindPrepaidNotice", "ru", context).text
        assert "5 days" in render("SecondRemindPrepaidNotice", "en", context).text

    def test_reminder_shows_the_contract_date_in_the_client_time_zone(self) -> None:
        # 2026-03-04 21:30 UTC is already March 5th in Moscow
        rendered = render(
            "FirstRemindPrepaidNotice", "ru", sample_context("FirstRemindPrepaidNotice")
        )
        assert "Договор № k-1 от 5 марта 2026" in rendered.text

    def test_cargo_clients_get_cargo_wording(self) -> None:
        context = sample_context("PrepaidFirstTakeARideNotice", service="cargo")
        rendered = render("PrepaidFirstTakeARideNotice", "ru", context)
        assert "доставку" in rendered.subject
        assert "Корпоративной доставки" in rendered.text

    def test_html_escapes_the_client_name(self) -> None:
        context = sample_context("ActivateClientNotice", name="<script>alert(1)</script>")
        rendered = render("ActivateClientNotice", "en", context)
        assert "<script>" not in rendered.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html

    def test_text_and_subject_are_not_escaped(self) -> None:
        context = sample_context("ActivateClientNotice", name="Tom & Jerry <Ltd>")
        rendered = render("ActivateClientNotice", "en", context)
        assert "Tom & Jerry <Ltd>" in rendered.text
        assert "Tom & Jerry <Ltd>" in rendered.subject
        assert "Tom &amp; Jerry &lt;Ltd&gt;" in rendered.html

    def test_unknown_locale_falls_back_to_en(self) -> None:
        rendered = render("LowBalanceNotice", "de", sample_context("LowBalanceNotice"))
        assert rendered.locale == "en"
        assert "Low balance" in rendered.subject

    def test_region_locales_use_their_language(self) -> None:
        assert render("FinancialUnblockNotice", "ru_RU", sample_context("x")).locale == "ru"
        assert render("FinancialUnblockNotice", "ru-RU", sample_context("x")).locale == "ru"

    def test_unknown_letter_is_a_render_error(self) -> None:
        with pytest.raises(TemplateRenderError, match="NoSuchNotice") as info:
            render("NoSuchNotice", "en", sample_context("NoSuchNotice"))
        assert isinstance(info.value, PermanentEventError)

    def test_missing_variable_is_named(self) -> None:
        context = sample_context("LowBalanceNotice")
        del context["balance"]
        with pytest.raises(
            TemplateRenderError, match="missing variable: 'balance' is undefined"
        ) as info:
            render("LowBalanceNotice", "ru", context)
        message = str(info.value)
        assert "LowBalanceNotice" in message
        assert "[ru]" in message
        assert "LowBalanceNotice/ru/subject.txt" in message
        assert info.value.file == "subject.txt"

    def test_missing_attribute_is_named(self) -> None:
        context = sample_context("ActivateClientNotice")
        del context["links"]["unsubscribe_url"]
        with pytest.raises(TemplateRenderError, match="unsubscribe_url") as info:
            render("ActivateClientNotice", "en", context)
        assert "_layout.html" in str(info.value)

    def test_error_survives_pickling(self) -> None:
        error = TemplateRenderError("boom", letter="L", locale="ru", file="body.html")
        copy = pickle.loads(pickle.dumps(error))
        assert (str(copy), copy.letter, copy.file) == ("boom", "L", "body.html")


class TestBrokenTemplates:
    """Faults injected into a throwaway template tree, never the packaged one."""

    @pytest.fixture
    def tree(self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
        from jinja2 import FileSystemLoader

        env = rendering._environment()
        env.loader = FileSystemLoader(tmp_path)
        monkeypatch.setattr(rendering, "_env", env)
        monkeypatch.setattr(rendering, "TEMPLATES_DIR", tmp_path)
        rendering.template_names.cache_clear()
        rendering._locales.cache_clear()
        yield tmp_path
        rendering.template_names.cache_clear()
        rendering._locales.cache_clear()

    @staticmethod
    def write(root: Any, subject: str, html: str = "ok", text: str = "ok") -> None:
        folder = root / "Broken" / "en"
        folder.mkdir(parents=True)
        (folder / "subject.txt").write_text(subject)
        (folder / "body.html").write_text(html)
        (folder / "body.txt").write_text(text)

    def test_syntax_error_names_file_and_line(self, tree: Any) -> None:
        self.write(tree, "Hi", html="line one\n{% if %}")
        with pytest.raises(TemplateRenderError, match=r"Broken/en/body.html:2: syntax error"):
            render("Broken", "en", {})

    def test_multi_line_subject_is_rejected(self, tree: Any) -> None:
        self.write(tree, "Hello\n{{ 'second line' }}")
        with pytest.raises(TemplateRenderError, match="one non-empty line"):
            render("Broken", "en", {})

    def test_sandbox_blocks_private_attributes(self, tree: Any) -> None:
        self.write(tree, "{{ ''.__class__.__mro__ }}")
        with pytest.raises(TemplateRenderError, match="Broken"):
            render("Broken", "en", {})

    def test_sandbox_blocks_mutating_the_context(self, tree: Any) -> None:
        self.write(tree, "{{ params.update({'x': 1}) }}")
        params: dict[str, Any] = {}
        with pytest.raises(TemplateRenderError, match="unsafe"):
            render("Broken", "en", {"params": params})
        assert params == {}

    def test_bad_filter_input_is_a_render_error(self, tree: Any) -> None:
        self.write(tree, "{{ 'lots'|money('RUB') }}")
        with pytest.raises(TemplateRenderError, match="money: not an amount"):
            render("Broken", "en", {})


class TestFilters:
    @pytest.mark.parametrize(
        ("amount", "currency", "locale", "expected"),
        [
            (Decimal("1234.56"), "RUB", "ru", "1 234,56 ₽"),
            (Decimal("1234.56"), "RUB", "en", "RUB 1,234.56"),
            ("1234567.005", "RUB", "ru", "1 234 567,01 ₽"),
            (0, "RUB", "ru", "0,00 ₽"),
            (-120, "RUB", "ru", "-120,00 ₽"),
            (-120, "rub", "en", "RUB -120.00"),
            (99.9, "USD", "ru", "99,90 $"),
            (5, "CHF", "ru", "5,00 CHF"),
        ],
    )
    def test_money(self, amount: Any, currency: str, locale: str, expected: str) -> None:
        assert format_money(amount, currency, locale) == expected

    def test_date_local(self) -> None:
        moment = datetime(2026, 12, 31, 22, 15, tzinfo=UTC)
        assert format_date_local(moment, "Asia/Vladivostok", "ru") == "1 января 2027, 08:15"
        assert format_date_local(moment, "Europe/London", "en") == "31 December 2026, 22:15"
        assert (
            format_date_local("2026-06-01T09:00:00", "UTC", "en", with_time=False) == "1 June 2026"
        )

    @pytest.mark.parametrize(
        ("n", "expected"),
        [(1, "день"), (2, "дня"), (5, "дней"), (11, "дней"), (21, "день"), (22, "дня")],
    )
    def test_russian_plural(self, n: int, expected: str) -> None:
        assert rendering.plural(n, "день", "дня", "дней") == expected
