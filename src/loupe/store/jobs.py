"""Jobs queued or running (trains, evaluations, advice, suggestions) in LMDB, so every process sharing the
data dir sees every process's jobs: the reads and writes the transactions gain from this mixin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from loupe.store import keys as K
from loupe.store.records import Job

JOB_DATABASES = ("jobs",)


class JobReads:
    """Mixed into ReadTxn (which provides `_get` and `iter_prefix`)."""

    iter_prefix: Any

    def iter_jobs(self, app_id: str | None = None) -> Iterator[tuple[str, Job]]:
        """(app id, job) of one app, or of all."""
        for key, value in self.iter_prefix("jobs", b"" if app_id is None else K.prefix(app_id)):
            yield key.split(K.SEP)[0].decode("utf-8"), msgspec.msgpack.decode(value, type=Job)


class JobWrites(JobReads):
    """Mixed into WriteTxn (which provides `_put` and `_delete`)."""

    _put: Any
    _delete: Any

    def put_job(self, app_id: str, job: Job) -> None:
        self._put("jobs", K.join(app_id, job.id), msgspec.msgpack.encode(job))

    def delete_job(self, app_id: str, job_id: str) -> None:
        self._delete("jobs", K.join(app_id, job_id))

    def delete_jobs(self, app_id: str) -> None:
        for key in [key for key, _ in self.iter_prefix("jobs", K.prefix(app_id))]:
            self._delete("jobs", key)
