"""AWS Lambda events as API Gateway (REST, v1), API Gateway HTTP APIs (payload 1.0 and 2.0) and
Application Load Balancers send them, in the shapes Mangum's handlers read (its own test events
follow the same AWS documentation). Each builder takes the request's method, path, query
parameters and body, and names the client address the platform saw."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

CLIENT = "198.51.100.23"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) ExampleBrowser/1.0"


def _query(params: dict[str, list[str]]) -> str:
    return urllib.parse.urlencode([(k, v) for k, values in params.items() for v in values])


def _body(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    return base64.b64encode(body).decode(), True


def api_gateway_v1(method: str, path: str, params: dict[str, list[str]], body: bytes = b"",
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A REST API (API Gateway v1) proxy integration event."""
    text, encoded = _body(body)
    header_values = {
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": USER_AGENT,
        "Accept-Language": "de-CH,de;q=0.9",
        "X-Forwarded-For": f"{CLIENT}, 130.176.0.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": header_values,
        "multiValueHeaders": {k: [v] for k, v in header_values.items()},
        "queryStringParameters": {k: v[-1] for k, v in params.items()} or None,
        "multiValueQueryStringParameters": params or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "x1y2z3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "accountId": "111122223333",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "apiId": "abc123",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1796000000000,
            "identity": {"sourceIp": CLIENT, "userAgent": USER_AGENT, "user": None},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def http_api_v2(method: str, path: str, params: dict[str, list[str]], body: bytes = b"",
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API (API Gateway v2) event, payload format 2.0."""
    text, encoded = _body(body)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": _query(params),
        "cookies": ["session=not-for-the-log"],
        "headers": {
            "host": "def456.execute-api.eu-west-1.amazonaws.com",
            "user-agent": USER_AGENT,
            "x-forwarded-for": CLIENT,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "queryStringParameters": {k: ",".join(v) for k, v in params.items()} or None,
        "requestContext": {
            "accountId": "111122223333",
            "apiId": "def456",
            "domainName": "def456.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "def456",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": CLIENT,
                "userAgent": USER_AGENT,
            },
            "requestId": "Jd2kQgY1IAMEbcQ=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:10:00:00 +0000",
            "timeEpoch": 1796637600000,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def http_api_v1(method: str, path: str, params: dict[str, list[str]], body: bytes = b"",
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API event with payload format 1.0 (the REST shape plus ``version``)."""
    event = api_gateway_v1(method, path, params, body, headers)
    event["version"] = "1.0"
    event["resource"] = path
    return event


def alb(method: str, path: str, params: dict[str, list[str]], body: bytes = b"",
        headers: dict[str, str] | None = None, multi_value: bool = False) -> dict[str, Any]:
    """An Application Load Balancer target event (multi-value headers on or off)."""
    text, encoded = _body(body)
    header_values = {
        "host": "my-alb-1234567890.eu-west-1.elb.amazonaws.com",
        "user-agent": USER_AGENT,
        "x-forwarded-for": CLIENT,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-amzn-trace-id": "Root=1-6571a000-0123456789abcdef01234567",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": (
            "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/app/0123456789abcdef"
        )}},
        "httpMethod": method,
        "path": path,
        "body": text or "",
        "isBase64Encoded": encoded,
    }
    if multi_value:
        event["multiValueHeaders"] = {k: [v] for k, v in header_values.items()}
        event["multiValueQueryStringParameters"] = {
            k: [urllib.parse.quote(v) for v in values] for k, values in params.items()}
    else:
        event["headers"] = header_values
        event["queryStringParameters"] = {
            k: urllib.parse.quote(v[-1]) for k, v in params.items()}
    return event


def alb_multi_value(method: str, path: str, params: dict[str, list[str]], body: bytes = b"",
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
    return alb(method, path, params, body, headers, multi_value=True)


EVENTS = {
    "api-gateway-v1": api_gateway_v1,
    "http-api-v1": http_api_v1,
    "http-api-v2": http_api_v2,
    "alb": alb,
    "alb-multi-value": alb_multi_value,
}


class Context:
    """What the Lambda runtime passes as the handler's second argument (the parts read)."""

    function_name = "asgi-log-to-sqlite-test"
    aws_request_id = "0f6b9d3e-5c55-4a9e-8d3e-1c1f4e0a7c11"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
