#!/usr/bin/env python3
"""A misbehaving web server for http_test.sh (Python's http.server).

Serves the files of --root on 127.0.0.1 (a free port, written to --port-file)
and misbehaves as --mode says:
  flaky    ranges as asked, but at random (--fail-rate, seeded by --seed),
           in turn: 503 with Retry-After: 0, 429, 500, the connection closed before
           any answer, the body cut short and the connection closed, or a
           legal shorter range (206 with fewer bytes than asked); HEAD fails
           at random too
  norange  ignores Range: every GET answers 200 with the whole file
  badhead  HEAD answers 405; GET ranges work
  nolength HEAD answers 200 without Content-Length; GET ranges work
  slow     ranges as asked, each GET held --delay seconds; the most GETs in
           flight at once is counted as "max-inflight"
  s3sig    an S3 path-style endpoint (/BUCKET/KEY -> --root/BUCKET/KEY) that
           checks every request's AWS Signature Version 4 against
           --access-key/--secret-key, computed here from the AWS
           documentation ("Create a signed AWS API request"), and answers
           403 SignatureDoesNotMatch (S3's XML error) when it differs
Every injected fault is counted; the counts are written to --stats-file
after each request, so the test can check the faults really happened.
"""
import argparse
import hashlib
import hmac
import json
import os
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--root", required=True)
parser.add_argument("--port-file", required=True)
parser.add_argument("--stats-file", required=True)
parser.add_argument("--mode", choices=["flaky", "norange", "badhead", "nolength", "slow", "s3sig"], required=True)
parser.add_argument("--access-key", default="")
parser.add_argument("--secret-key", default="")
parser.add_argument("--region", default="us-east-1")
parser.add_argument("--delay", type=float, default=0.05)
parser.add_argument("--seed", default="0")
parser.add_argument("--fail-rate", type=float, default=0.3)
args = parser.parse_args()

rng = random.Random(args.seed)
lock = threading.Lock()
stats = {}


def count(what, by=1):
    with lock:
        stats[what] = stats.get(what, 0) + by
        stats["max-inflight"] = max(stats.get("max-inflight", 0), stats.get("inflight", 0))
        with open(args.stats_file + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(args.stats_file + ".tmp", args.stats_file)


KINDS = ["503", "429", "500", "close", "cut", "short"]
next_kind = [0]


def pick():
    """A fault at random (--fail-rate); the kinds take turns, so a few dozen
    requests see every kind."""
    with lock:
        if rng.random() >= args.fail_rate:
            return None
        next_kind[0] += 1
        return KINDS[next_kind[0] % len(KINDS)]


def sigv4_problem(method, raw_path, headers):
    """None when the request carries a valid SigV4 signature, else why not."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no AWS4-HMAC-SHA256 Authorization header"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access, date, region, service, term = fields["Credential"].split("/")
    if access != args.access_key:
        return "unknown access key"
    if region != args.region or service != "s3" or term != "aws4_request":
        return "scope " + "/".join([region, service, term]) + " is not " + args.region + "/s3/aws4_request"
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    path, _, query = raw_path.partition("?")
    # S3 canonicalises the key it received: decoded, then every byte but
    # A-Z a-z 0-9 - _ . ~ and '/' percent-encoded.
    from urllib.parse import quote, unquote
    path = quote(unquote(path), safe="/-_.~")
    canonical_query = "&".join(sorted(q for q in query.split("&") if q))
    canonical_headers = "".join("%s:%s\n" % (h, " ".join(headers.get(h, "").split())) for h in signed)
    payload = headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())
    request = "\n".join([method, path, canonical_query, canonical_headers, fields["SignedHeaders"], payload])
    scope = "/".join([date, region, service, term])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope,
                         hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + args.secret_key).encode()
    for part in (date, region, service, term):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    if hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() != fields["Signature"]:
        return "signature differs"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so closes hit reused connections

    def log_message(self, *a):
        pass

    def path_of(self):
        from urllib.parse import unquote
        p = os.path.normpath(os.path.join(args.root, unquote(self.path.split("?")[0]).lstrip("/")))
        if not p.startswith(os.path.abspath(args.root)) or not os.path.isfile(p):
            return None
        return p

    def status_only(self, code, extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def refused_signature(self):
        if args.mode != "s3sig":
            return False
        why = sigv4_problem(self.command, self.path, self.headers)
        if why is None:
            count("signature-ok")
            return False
        count("fault:signature-" + why.replace(" ", "-"))
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
                "<Message>The request signature we calculated does not match the signature you provided ("
                + why + ")</Message></Error>").encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def do_HEAD(self):
        count("head")
        if self.refused_signature():
            return
        p = self.path_of()
        if p is None:
            return self.status_only(404)
        if args.mode == "badhead":
            count("fault:head-405")
            return self.status_only(405)
        if args.mode == "flaky":
            f = pick()
            if f in ("503", "429", "500"):
                count("fault:head-" + f)
                return self.status_only(int(f), [("Retry-After", "0")])
            if f == "close":
                count("fault:head-close")
                self.close_connection = True
                return
        self.send_response(200)
        if args.mode != "nolength":
            self.send_header("Content-Length", str(os.path.getsize(p)))
        else:
            count("fault:head-no-length")
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        count("get")
        if self.refused_signature():
            return
        if args.mode == "slow":
            import time
            count("inflight")
            try:
                time.sleep(args.delay)
                return self.get()
            finally:
                count("inflight", -1)
        return self.get()

    def get(self):
        p = self.path_of()
        if p is None:
            return self.status_only(404)
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            data = f.read()
        rng_hdr = self.headers.get("Range")
        if args.mode == "norange" or not rng_hdr:
            if rng_hdr:
                count("fault:ignored-range")
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(data)
            return
        first, _, last = rng_hdr.removeprefix("bytes=").partition("-")
        first, last = int(first), min(int(last), size - 1)
        if first >= size:
            return self.status_only(416, [("Content-Range", "bytes */%d" % size)])
        fault = pick() if args.mode == "flaky" else None
        if fault in ("503", "429", "500"):
            count("fault:" + fault)
            return self.status_only(int(fault), [("Retry-After", "0")])
        if fault == "close":
            count("fault:close")
            self.close_connection = True
            return
        if fault == "short" and last > first:
            count("fault:short-range")
            last = first + (last - first) // 2
        body = data[first:last + 1]
        self.send_response(206)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "cut" and len(body) > 1:
            count("fault:cut")
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(args.port_file + ".tmp", args.port_file)
server.serve_forever()
