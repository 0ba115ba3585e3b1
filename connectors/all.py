"""THE list of shipped parts: every customer connector, staff surface and publisher.

A new messenger is one line here (its factory, and the settings that turn it on). The order is
the order the parts are built and listed in (`/link`, /healthz, `run.py check`).
"""

from __future__ import annotations

from bridge.registry import Part, Registry
from connectors import facebook_page, matrix, messenger, slack, sms, telegram, whatsapp, x

SHIPPED = Registry(
    connectors={
        "messenger": Part(
            messenger.build, "set [messenger] page_id, page_token, app_secret and verify_token"
        ),
        "sms": Part(
            sms.build,
            "set [sms] account_sid, auth_token and from_number or messaging_service_sid,"
            " and [bridge] public_url",
        ),
        "telegram": Part(telegram.build, "set [telegram] token, or BRIDGE_TELEGRAM__TOKEN"),
        "whatsapp": Part(
            whatsapp.build,
            "set [whatsapp] phone_number_id, access_token, app_secret and verify_token",
        ),
    },
    surfaces={
        "matrix": Part(
            matrix.build, "set [matrix] homeserver, user_id, room and access_token or password"
        ),
        "slack": Part(
            slack.build,
            "set [slack] bot_token and channel, plus app_token for Socket Mode or"
            " signing_secret for the HTTP Events API",
        ),
    },
    publishers={
        "facebook": Part(facebook_page.build),
        "x": Part(x.build),
    },
)
