"""Schemathesis hooks for scripts/api-fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

Every valid `idempotency_key` the fuzzer generates is made unique before the
request is sent. A generator reuses short keys ("0") across requests with
different texts, which the API answers, by design, with 422
`idempotency_key_reused` (the IETF Idempotency-Key draft's answer; tested in
tests/api_reviews.rs). Invalid keys (wrong length or characters) are left as
generated, so that their rejection is still checked.
"""

import itertools
import re
import uuid

import schemathesis

_VALID = re.compile(r"[!-~]{1,128}")
_RUN = uuid.uuid4().hex[:12]
_SEQ = itertools.count()


def _fresh(obj):
    if isinstance(obj, dict):
        key = obj.get("idempotency_key")
        if isinstance(key, str) and _VALID.fullmatch(key):
            obj["idempotency_key"] = f"fz-{_RUN}-{next(_SEQ)}"
        for v in obj.values():
            _fresh(v)
    elif isinstance(obj, list):
        for v in obj:
            _fresh(v)


@schemathesis.hook
def before_call(context, case, **kwargs):
    _fresh(case.body)
