"""Configuration over the operator API: letter switches and parameters (code defaults +
database overrides, audited) and integration switches (the gateway's providers)."""
