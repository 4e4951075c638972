from pathlib import Path

from notifier.letters.catalog_doc import DOC, render
from notifier.letters.definitions import LETTERS


class TestCatalogDoc:
    def test_docs_letters_md_is_generated_from_the_catalog(self) -> None:
        assert Path(__file__).resolve().parents[3] / "docs" / "letters.md" == DOC
        assert DOC.read_text() == render(), (
            "docs/letters.md is stale: uv run python -m notifier.letters.catalog_doc --write"
        )

    def test_every_letter_has_a_row_with_its_timing(self) -> None:
        text = render()
        for spec in LETTERS:
            assert f"| {spec.name} |" in text
        assert "| LowBalanceNotice | email | `client.balance_changed` | immediately | — |" in text
        assert "| CrmEmailChange | crm: `change_email` | `user.email_changed` |" in text
        assert "the provider id of the last sent CrmContactSync" in text
        assert "at most once per 24 h per client" in text
        assert "+3 days, 11:00 local" in text
