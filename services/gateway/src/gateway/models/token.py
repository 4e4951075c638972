from notifier_common.tokens import TokenMixin

from gateway.models.base import Base


class ApiToken(TokenMixin, Base):
    __tablename__ = "api_tokens"
    token_prefix = "gwt_"
