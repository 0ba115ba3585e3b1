"""Commands shared by Slack slash commands and Matrix !commands."""
