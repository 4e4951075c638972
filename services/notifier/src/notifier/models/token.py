from notifier_common.tokens import TokenMixin

from notifier.models.base import Base


class ApiToken(TokenMixin, Base):
    __tablename__ = "api_tokens"
