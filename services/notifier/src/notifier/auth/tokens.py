"""Token administration for the CLI (and tests)."""

from notifier_common.token_admin import TokenAdmin

from notifier.models import ApiToken

admin = TokenAdmin(ApiToken, app_name="notifier-cli")
create_token = admin.create
revoke_token = admin.revoke
list_tokens = admin.list
