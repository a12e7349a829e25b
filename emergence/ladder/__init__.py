"""The in-pipeline model ladder: small GPT-2-style LMs trained on generated arithmetic."""
