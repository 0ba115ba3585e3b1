"""Staff roles per surface user."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, select

from bridge.types import Role
from storage.records import Repository
from storage.tables import staff_roles


class Roles(Repository):
    """The roles given to staff members, and the role a staff member has."""

    def role_of(self, surface: str, user: str) -> str | None:
        """The role stored for a user, if any."""
        return self.conn.execute(
            select(staff_roles.c.role).where(
                staff_roles.c.surface == surface, staff_roles.c.user_id == user
            )
        ).scalar()

    def effective_role(
        self,
        surface: str,
        user: str,
        *,
        admins: Collection[str],
        default: str,
        stranger: bool = False,
    ) -> Role:
        """A staff member's role: none for strangers, admins from settings, the stored role,
        else the default."""
        if stranger:
            return Role.NONE
        if user in admins:
            return Role.ADMIN
        stored = self.role_of(surface, user)
        return Role[(stored or default).upper()]

    def admins_of(self, admins: Collection[str]) -> list[str]:
        """Who may give roles: the admins from settings, then those given the admin role."""
        given = self.conn.execute(
            select(staff_roles.c.user_id)
            .where(staff_roles.c.role == Role.ADMIN.label)
            .order_by(staff_roles.c.user_id)
        ).scalars()
        return [*admins, *(user for user in given if user not in admins)]

    def set_role(self, surface: str, user: str, role: str | None, by: str, at: datetime) -> None:
        """Give a user a role; None takes the stored role away (the default applies again)."""
        self.conn.execute(
            delete(staff_roles).where(
                staff_roles.c.surface == surface, staff_roles.c.user_id == user
            )
        )
        if role is not None:
            self.conn.execute(
                staff_roles.insert().values(
                    surface=surface, user_id=user, role=role, granted_by=by, granted_at=at
                )
            )

    def list_roles(self) -> list[tuple[str, str, str, str, datetime]]:
        """Every stored role: surface, user, role, granted by, granted at."""
        rows = self.conn.execute(
            select(
                staff_roles.c.surface,
                staff_roles.c.user_id,
                staff_roles.c.role,
                staff_roles.c.granted_by,
                staff_roles.c.granted_at,
            ).order_by(staff_roles.c.role, staff_roles.c.user_id)
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
