"""The traffic dashboard inside Datasette: offered for every log database, seen only by those
who may read that database.

datasette-dashboards reads its dashboards from its plugin configuration on every request; the
plugin adds one per log database there (see :mod:`.dashboard` for what it holds). Privacy rests
on Datasette's own checks: every chart's data comes from ``/DB.json?sql=...``, and a dashboard
page needs ``execute-sql`` on its databases, which the plugin denies wherever ``view-database``
is denied. This module adds the one thing those checks miss: the list at ``/-/dashboards`` names
every configured dashboard to anyone, so the plugin serves that list itself, leaving out the
dashboards whose databases the visitor may not read.

Used only by :mod:`.datasette_plugin` (it imports Datasette).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from datasette.utils.asgi import Forbidden, Response

from .dashboard import DASHBOARDS_PLUGIN

__all__ = ["dashboard_list", "dashboards_can_run", "may_read_database", "without_users_slugs"]


def dashboards_can_run(datasette: Any) -> bool:
    """datasette-dashboards is installed and this Datasette has the permission API it calls.

    datasette-dashboards 0.8.0 checks permissions with ``Datasette.permission_allowed()``, which
    the Datasette 1.0 pre-releases removed: there, each of its pages fails, so no dashboard is
    configured.
    """
    return importlib.util.find_spec("datasette_dashboards") is not None and hasattr(
        datasette, "permission_allowed"
    )


def without_users_slugs(ours: Mapping[str, Any], datasette: Any) -> dict[str, Any]:
    """Our dashboards, less those whose address the user configured themselves (theirs win)."""
    local = getattr(datasette, "_metadata_local", None) or {}
    users = ((local.get("plugins") or {}).get(DASHBOARDS_PLUGIN)) or {}
    if not isinstance(users, dict):
        return dict(ours)
    return {slug: dashboard for slug, dashboard in ours.items() if slug not in users}


async def may_read_database(datasette: Any, actor: Any, database: str) -> bool:
    """What Datasette asks before running SQL on a database page: may this actor do it?"""
    for action, resource in (
        ("view-instance", None),
        ("view-database", database),
        ("execute-sql", database),
    ):
        if not await datasette.permission_allowed(actor, action, resource=resource, default=True):
            return False
    return True


async def _may_see(datasette: Any, actor: Any, dashboard: Any) -> bool:
    if not isinstance(dashboard, dict):
        return False
    charts = dashboard.get("charts") or {}
    databases = {
        chart["db"] for chart in charts.values() if isinstance(chart, dict) and chart.get("db")
    } if isinstance(charts, dict) else set()
    for database in databases:
        if not await may_read_database(datasette, actor, str(database)):
            return False
    return True


async def dashboard_list(request: Any, datasette: Any) -> Response:
    """``/-/dashboards``: datasette-dashboards' own list page, with only what this visitor may
    read (a dashboard on a private log is not even named to others)."""
    if await datasette.permission_allowed(request.actor, "view-instance", default=None) is False:
        raise Forbidden("view-instance denied")
    config = datasette.plugin_config(DASHBOARDS_PLUGIN) or {}
    visible = {
        slug: dashboard
        for slug, dashboard in (config.items() if isinstance(config, dict) else ())
        if await _may_see(datasette, request.actor, dashboard)
    }
    return Response.html(
        await datasette.render_template(
            "dashboard_list.html", {"dashboards": visible}, request=request
        )
    )
