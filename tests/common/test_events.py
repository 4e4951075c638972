import uuid

import pytest
from notifier_common.events import EVENT_TYPES, BalanceChanged, describe_errors, parse_event
from pydantic import ValidationError

from tests.factories import event_body


class TestEventContract:
    def test_valid_event_parses_into_its_typed_model(self) -> None:
        event = parse_event(event_body("client.balance_changed"))
        assert isinstance(event, BalanceChanged)
        assert str(event.payload.new_balance) == "50.00"

    def test_unknown_field_in_payload_is_rejected_with_its_path(self) -> None:
        body = event_body(payload={"old_balance": "1", "new_balance": "2", "bogus": 1})
        with pytest.raises(ValidationError) as exc:
            parse_event(body)
        assert {
            "loc": "payload.bogus",
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        } in describe_errors(exc.value)

    def test_unknown_type_reports_the_type_field(self) -> None:
        with pytest.raises(ValidationError) as exc:
            parse_event(event_body("client.teleported"))
        errors = describe_errors(exc.value)
        assert errors[0]["loc"] == "type"
        assert "client.teleported" in errors[0]["msg"]

    def test_naive_occurred_at_is_rejected(self) -> None:
        body = event_body()
        body["occurred_at"] = "2026-01-01T10:00:00"
        with pytest.raises(ValidationError) as exc:
            parse_event(body)
        assert describe_errors(exc.value)[0]["loc"] == "occurred_at"

    def test_unsupported_version_is_rejected(self) -> None:
        body = event_body()
        body["version"] = 2
        with pytest.raises(ValidationError):
            parse_event(body)

    def test_every_type_has_a_json_schema_with_forbidden_extras(self) -> None:
        for name, cls in EVENT_TYPES.items():
            schema = cls.model_json_schema()
            assert schema["additionalProperties"] is False, name
            assert schema["properties"]["type"]["const"] == name

    def test_event_id_is_kept_as_uuid(self) -> None:
        eid = uuid.uuid4()
        assert parse_event(event_body(event_id=eid)).id == eid
