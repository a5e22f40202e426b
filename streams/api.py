"""The worker's user endpoint: `GET /users/{user_id}`, the explanation of a user
(`streams.explain`) as JSON, or as a page for customer service.

It serves a person's credit data, so it exists only when the worker is given a
bearer token (`--api-token-file`); without one the path is not served at all, and
`/metrics` is unchanged either way. A request without the token is refused with 401
and counted. Any worker of the group answers for any user: the worker that does not
own the user's partition asks the one that does (found in Faust's assignment, each
worker's `--advertised-url`) and passes its answer on; a request already passed on
once is never passed on again (a partition moving between workers answers 503).

Outcomes are counted in `closure_monitor_api_requests_total{endpoint, outcome}`.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import orjson

from streams import _engine
from streams.explain import (
    HISTORY_LIMIT,
    BadUserId,
    check_user_id,
    explanation,
    history_decisions,
    render_html,
)
from streams.progress import HISTORY_KEY

if TYPE_CHECKING:
    import faust

    from streams.metrics import Metrics
    from streams.policy import Policy
    from streams.settings import Settings
    from streams.shell import Shell

log = logging.getLogger(__name__)

# Set on a request one worker passes on to the owner of the user's partition.
FORWARDED = "X-Closure-Monitor-Forwarded"
FORWARD_TIMEOUT = 10.0


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the bearer token (compared in constant
    time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def wants_html(request: Any) -> bool:
    """`?format=html`, or a browser's Accept (HTML before JSON) without `?format=json`."""
    fmt = request.query.get("format")
    if fmt is not None:
        return bool(fmt == "html")
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split("text/html")[0]


class UserApi:
    """`/users/{user_id}` of one worker."""

    def __init__(self, app: faust.App, shell: Shell, policy: Policy, settings: Settings,
                 metrics: Metrics, token: str) -> None:
        self.app = app
        self.shell = shell
        self.policy = policy
        self.settings = settings
        self.metrics = metrics
        self.token = token

    def register(self) -> None:
        async def users(view: Any, request: Any, user_id: str) -> Any:
            # Faust calls a page function as a view's method: (view, request, **match).
            return await self.user(view, request, user_id)

        self.app.page("/users/{user_id}")(users)

    def _answer(self, web: Any, outcome: str, status: int, message: str,
                headers: dict[str, str] | None = None) -> Any:
        self.metrics.count_api("users", outcome)
        return web.json({"error": message}, status=status, headers=headers)

    async def user(self, web: Any, request: Any, user_id: str) -> Any:
        """`web`: Faust's view (its json, html and bytes responses); `user_id` is the
        path's, percent-decoded."""
        if not authorized(request.headers.get("Authorization"), self.token):
            return self._answer(web, "unauthorized", 401, "a bearer token is needed",
                                {"WWW-Authenticate": 'Bearer realm="closure-monitor"'})
        try:
            check_user_id(user_id)
        except BadUserId as exc:
            return self._answer(web, "bad_request", 400, str(exc))
        p = _engine.partition_for(user_id.encode(), self.settings.partitions)
        if self.app.rebalancing:
            return self._answer(web, "unavailable", 503, "the workers are rebalancing: "
                                "ask again in a few seconds", {"Retry-After": "2"})
        if self._holds(p):
            return self._local(web, request, user_id, p)
        if request.headers.get(FORWARDED):
            return self._answer(web, "unavailable", 503, f"partition {p} is moving "
                                "between workers: ask again in a few seconds",
                                {"Retry-After": "2"})
        owner = self._owner(p)
        if owner is None:
            return self._answer(web, "unavailable", 503, f"no worker holds partition {p} "
                                "now: ask again in a few seconds", {"Retry-After": "2"})
        return await self._forward(web, request, owner)

    def _holds(self, p: int) -> bool:
        actives = self.app.assignor.assigned_actives()
        return any(tp.partition == p and tp.topic in self.settings.topics.inputs
                   for tp in actives)

    def _owner(self, p: int) -> str | None:
        """The advertised URL of the worker that owns partition p, from the group's
        assignment (its table's changelog partition p)."""
        changelog = self.shell.table.changelog_topic.get_topic_name()
        for url, topics in self.app.router.table_metadata(self.shell.table.name).items():
            if p in topics.get(changelog, ()):
                return str(url)
        return None

    def _state(self, user_id: str, p: int) -> bytes | None:
        part = self.shell.parts.get(p)
        if part is not None:
            raw: bytes | None = part.engine.state(user_id)
            return raw
        stored = self.shell.table.data.get(user_id.encode())
        return bytes(stored) if stored is not None else None

    def _local(self, web: Any, request: Any, user_id: str, p: int) -> Any:
        raw = self._state(user_id, p)
        if raw is None:
            return self._answer(web, "not_found", 404, f"no such user: {user_id}")
        history = self.shell.history(HISTORY_KEY + user_id.encode(), p)
        view = explanation(self.policy, raw, history_decisions(history))
        view["decisions_kept"] = HISTORY_LIMIT
        self.metrics.count_api("users", "ok")
        if wants_html(request):
            return web.html(render_html(view))
        return web.bytes(orjson.dumps(view), content_type="application/json")

    async def _forward(self, web: Any, request: Any, owner: str) -> Any:
        import aiohttp

        url = f"{owner.rstrip('/')}{request.rel_url}"
        headers = {FORWARDED: "1", "Authorization": request.headers.get("Authorization", "")}
        accept = request.headers.get("Accept")
        if accept:
            headers["Accept"] = accept
        try:
            timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
            async with self.app.http_client.get(url, headers=headers,
                                                timeout=timeout) as response:
                body = await response.read()
                kept = {k: v for k, v in response.headers.items()
                        if k in ("Content-Type", "Retry-After", "WWW-Authenticate")}
                self.metrics.count_api("users", "forwarded")
                return web.bytes(body, status=response.status, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("explain: %s did not answer: %s", owner, exc)
            return self._answer(web, "unavailable", 503, f"the worker that holds the user "
                                f"({owner}) did not answer: {exc}", {"Retry-After": "2"})
