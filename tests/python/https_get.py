"""One HTTPS request verifying the server against a CA file; prints JSON {status, headers, body}.

usage: https_get.py URL CA_FILE [--token=BEARER_TOKEN] [--method POST] [--data BODY]

The CA must verify the serving certificate for the URL's host (IP SANs included): this is
how the end-to-end tests check that admin.kubeconfig's CA really anchors the server. Without
--token (or with an empty one) no Authorization header is sent: an anonymous request. Pass it as
--token=VALUE: a token may begin with '-'.
Header names are lower-cased.
"""
import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ca_file")
    parser.add_argument("--token", default="")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca_file)  # verifies chain and hostname
    data = args.data.encode() if args.data is not None else None
    request = urllib.request.Request(args.url, data=data, method=args.method)
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            status, headers, body = response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
    print(json.dumps({"status": status, "headers": headers, "body": body.decode("utf-8", "replace")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
