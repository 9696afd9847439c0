#!/usr/bin/env python3
"""A Google Cloud Storage stand-in for weft's gs:// tests: the XML API as the `object_store`
crate calls it, in memory, on loopback.

No GCS emulator on PyPI or npm accepts `object_store`'s uploads (`gcp-storage-emulator` has
no HEAD, DELETE or suffix ranges on the XML API; fake-gcs-server's XML PUT asks for an
`uploadType`; Firebase's emulator serves GET only there), so this one serves what weft uses,
as Google documents it:

    PUT    /{bucket}/{key}                          upload (answers ETag, x-goog-generation)
    POST   /{bucket}/{key}?uploads                  start a multipart upload (XML: UploadId)
    PUT    /{bucket}/{key}?partNumber=N&uploadId=U  one part (answers its ETag)
    POST   /{bucket}/{key}?uploadId=U               complete (XML body: the parts, in order)
    DELETE /{bucket}/{key}?uploadId=U               abort
    GET    /{bucket}/{key}                          with Range: bytes=a-b, a- or -n (206)
    HEAD   /{bucket}/{key}
    DELETE /{bucket}/{key}                          204, or 404 when there is none
    GET    /{bucket}?list-type=2&prefix=…           ListBucketResult (one page)

Keys arrive percent-encoded (`/` as %2F). Buckets exist on first use. Authorization headers
are accepted and not checked. It prints `listening on http://127.0.0.1:<port>` once ready.

    python3 tests/gcs/emulator.py --port 0
"""
import argparse
import hashlib
import re
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
# (bucket, key) -> (bytes, generation, last-modified seconds)
OBJECTS = {}
# upload ID -> (bucket, key, {part number: bytes})
UPLOADS = {}
GENERATION = [int(time.time() * 1e6)]


def etag(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def next_generation():
    GENERATION[0] += 1
    return GENERATION[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def target(self):
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        parts = parsed.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return bucket, key, query

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def error(self, status, code, message):
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>" \
               f"<Message>{escape(message)}</Message></Error>".encode()
        self.reply(status, body, {"Content-Type": "application/xml"})

    def stored(self, data, generation, modified):
        return {
            "ETag": etag(data),
            "Last-Modified": formatdate(modified, usegmt=True),
            "x-goog-generation": str(generation),
            "Accept-Ranges": "bytes",
        }

    def do_PUT(self):
        bucket, key, query = self.target()
        data = self.body()
        if "uploadId" in query:
            upload = query["uploadId"][0]
            with LOCK:
                if upload not in UPLOADS:
                    return self.error(404, "NoSuchUpload", "no such upload")
                UPLOADS[upload][2][int(query["partNumber"][0])] = data
            return self.reply(200, headers={"ETag": etag(data)})
        if not key:
            return self.reply(200)  # bucket creation
        with LOCK:
            if self.headers.get("x-goog-if-generation-match") == "0" and (bucket, key) in OBJECTS:
                return self.error(412, "PreconditionFailed", "object exists")
            generation = next_generation()
            OBJECTS[(bucket, key)] = (data, generation, time.time())
        self.reply(200, headers={"ETag": etag(data), "x-goog-generation": str(generation)})

    def do_POST(self):
        bucket, key, query = self.target()
        data = self.body()
        if "uploads" in query:
            upload = hashlib.sha1(f"{bucket}/{key}/{time.time_ns()}".encode()).hexdigest()
            with LOCK:
                UPLOADS[upload] = (bucket, key, {})
            body = "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult>" \
                   f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><UploadId>{upload}</UploadId>" \
                   "</InitiateMultipartUploadResult>"
            return self.reply(200, body.encode(), {"Content-Type": "application/xml"})
        if "uploadId" in query:
            upload = query["uploadId"][0]
            numbers = [int(n.text) for n in ET.fromstring(data).iter()
                       if n.tag.endswith("PartNumber")]
            with LOCK:
                if upload not in UPLOADS:
                    return self.error(404, "NoSuchUpload", "no such upload")
                _, _, parts = UPLOADS.pop(upload)
                if any(n not in parts for n in numbers):
                    return self.error(400, "InvalidPart", "a listed part was not uploaded")
                whole = b"".join(parts[n] for n in numbers)
                generation = next_generation()
                OBJECTS[(bucket, key)] = (whole, generation, time.time())
            body = "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult>" \
                   f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><ETag>{etag(whole)}</ETag>" \
                   "</CompleteMultipartUploadResult>"
            return self.reply(200, body.encode(), {"Content-Type": "application/xml",
                                                   "x-goog-generation": str(generation)})
        self.error(400, "InvalidRequest", "unsupported POST")

    def do_DELETE(self):
        bucket, key, query = self.target()
        with LOCK:
            if "uploadId" in query:
                UPLOADS.pop(query["uploadId"][0], None)
                return self.reply(204)
            if OBJECTS.pop((bucket, key), None) is None:
                return self.error(404, "NoSuchKey", "no such object")
        self.reply(204)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        bucket, key, query = self.target()
        if not key:
            return self.list(bucket, query)
        with LOCK:
            found = OBJECTS.get((bucket, key))
        if found is None:
            return self.error(404, "NoSuchKey", "no such object")
        data, generation, modified = found
        headers = self.stored(data, generation, modified)
        spec = self.headers.get("Range")
        if spec is None:
            return self.reply(200, data, headers, head)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
        if match is None or match.groups() == ("", ""):
            return self.error(400, "InvalidArgument", f"bad range {spec}")
        first, last = match.groups()
        size = len(data)
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = min(size - 1, int(last)) if last else size - 1
        if start >= size or end < start:
            headers["Content-Range"] = f"bytes */{size}"
            return self.reply(416, b"", headers, head)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.reply(206, data[start:end + 1], headers, head)

    def list(self, bucket, query):
        prefix = query.get("prefix", [""])[0]
        with LOCK:
            keys = sorted((k, v) for (b, k), v in OBJECTS.items()
                          if b == bucket and k.startswith(prefix))
        entries = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{len(d)}</Size><ETag>{etag(d)}</ETag>"
            f"<LastModified>{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(m))}"
            "</LastModified></Contents>"
            for k, (d, _, m) in keys)
        body = "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult>" \
               f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount>" \
               f"<IsTruncated>false</IsTruncated>{entries}</ListBucketResult>"
        self.reply(200, body.encode(), {"Content-Type": "application/xml"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
