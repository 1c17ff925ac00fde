"""A configuration the config-page and watch tests start from, with canary secrets."""

STORED_SECRET = "sk-acme-canary-5ecret"
NEW_SECRET = "sk-gamma-canary-5ecret"

CURRENT = f"""
providers:
  acme:
    type: anthropic
    endpoint: https://acme.example
    apiKey: {STORED_SECRET}
  beta:
    type: openai
    endpoint: https://beta.example/v1
    apiKey: env.BETA_KEY
models:
  - name: acme-large
    provider: acme
    alias: claude-*
    context: 200000
  - name: beta-small
    provider: beta
    alias: gpt-*
"""
