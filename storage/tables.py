"""The schema's tables as SQLAlchemy Core handles, for the modules that build statements."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from storage.models import (
    ApiKey,
    ApiRequest,
    BlacklistEntry,
    BroadcastPost,
    BroadcastRow,
    BroadcastSend,
    ChannelMember,
    ConsentWord,
    Contact,
    Conversation,
    CryptoState,
    KeyValue,
    LinkClick,
    MediaFile,
    Message,
    MessageTemplate,
    OutboxRow,
    RuleChange,
    RuleFile,
    RuleFiring,
    RuleRow,
    ShortLinkRow,
    StaffRef,
    StaffRole,
    StaffThread,
    SubscriberChannel,
    TextBlock,
    Webhook,
)

contacts = cast(Table, Contact.__table__)
conversations = cast(Table, Conversation.__table__)
threads = cast(Table, StaffThread.__table__)
messages = cast(Table, Message.__table__)
refs = cast(Table, StaffRef.__table__)
outbox = cast(Table, OutboxRow.__table__)
media_files = cast(Table, MediaFile.__table__)
kv = cast(Table, KeyValue.__table__)
crypto_state = cast(Table, CryptoState.__table__)
blacklist = cast(Table, BlacklistEntry.__table__)
staff_roles = cast(Table, StaffRole.__table__)
channels = cast(Table, SubscriberChannel.__table__)
members = cast(Table, ChannelMember.__table__)
words = cast(Table, ConsentWord.__table__)
templates = cast(Table, MessageTemplate.__table__)
text_blocks = cast(Table, TextBlock.__table__)
rules = cast(Table, RuleRow.__table__)
rule_changes = cast(Table, RuleChange.__table__)
rule_firings = cast(Table, RuleFiring.__table__)
rule_files = cast(Table, RuleFile.__table__)
broadcasts = cast(Table, BroadcastRow.__table__)
broadcast_sends = cast(Table, BroadcastSend.__table__)
broadcast_posts = cast(Table, BroadcastPost.__table__)
short_links = cast(Table, ShortLinkRow.__table__)
link_clicks = cast(Table, LinkClick.__table__)
api_keys = cast(Table, ApiKey.__table__)
api_requests = cast(Table, ApiRequest.__table__)
webhooks = cast(Table, Webhook.__table__)
