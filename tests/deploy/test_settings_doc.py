"""README's configuration table and .env.example are generated from the settings classes."""

from __future__ import annotations

from notifier.settings import NotifierSettings

from deploy import settings_doc

REGENERATE = "run: uv run python -m deploy.settings_doc --write"


class TestSettingsDoc:
    def test_readme_table_is_in_sync_with_the_settings(self) -> None:
        readme = settings_doc.README.read_text()
        assert settings_doc.readme_with_table(readme, settings_doc.render_table()) == readme, (
            f"README.md configuration table is stale; {REGENERATE}"
        )

    def test_env_example_is_in_sync_with_the_settings(self) -> None:
        assert settings_doc.ENV_EXAMPLE.read_text() == settings_doc.render_env(), (
            f".env.example is stale; {REGENERATE}"
        )

    def test_every_notifier_and_gateway_setting_is_listed(self) -> None:
        env = settings_doc.render_env()
        names = [f"NOTIFIER_{n.upper()}" for n in NotifierSettings.model_fields]
        classes = dict(settings_doc.settings_classes())
        if "gateway" in classes:
            names += [f"GATEWAY_{n.upper()}" for n in classes["gateway"].model_fields]
        missing = [n for n in names if f"# {n}=" not in env]
        assert missing == []

    def test_pipes_in_descriptions_do_not_break_the_table(self) -> None:
        row = settings_doc.Setting("x", "X_ENV", "a|b", "one | two")
        line = settings_doc.render_table([row]).splitlines()[2]
        assert line == "| `X_ENV` | `a\\|b` | one \\| two |"
