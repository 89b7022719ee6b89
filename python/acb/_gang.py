"""Which multi-process job this process is a rank of: the gang its hello names.

The ranks of one torch.distributed job compute only together (a collective
waits for every rank), so the broker grants their devices together or not at
all (docs/scheduling.md, "Gangs"). A process learns its job from the
environment torchrun (torch.distributed.run, torchelastic) gives every rank:

- the job key: TORCHELASTIC_RUN_ID, unless it is unset or torchrun's default
  "none" (which every job without --rdzv-id shares); else MASTER_ADDR:MASTER_PORT,
  which no two jobs on a node share;
- its ranks on this node: LOCAL_WORLD_SIZE (the broker is per node, so a gang is
  the job's ranks here); a job with one rank here is no gang;
- its own rank here: LOCAL_RANK, when below LOCAL_WORLD_SIZE.

ACB_GANG (acb.options "gang") overrides: "off" makes no process a gang rank,
and any text other than "auto" is the job key itself (the sizes still come
from LOCAL_WORLD_SIZE and LOCAL_RANK). Pure: reads only the mapping it is given.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

#: TORCHELASTIC_RUN_ID's value when torchrun is started without --rdzv-id (shared by such jobs)
TORCHRUN_DEFAULT_RUN_ID = "none"


class Gang(NamedTuple):
    key: str               #: the job key, the same for every rank of the job
    local_world_size: int  #: the job's ranks on this node
    local_rank: int        #: this process's rank among them; -1: not known


def _count(text: Optional[str]) -> Optional[int]:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def job_key(environ: Mapping[str, str]) -> str:
    """The job key torchrun's environment gives; "" when it names no job."""
    run_id = environ.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id != TORCHRUN_DEFAULT_RUN_ID:
        return run_id
    address, port = environ.get("MASTER_ADDR", "").strip(), environ.get("MASTER_PORT", "").strip()
    if address and port:
        return f"{address}:{port}"
    return ""


def gang_of(environ: Mapping[str, str], setting: str = "auto") -> Optional[Gang]:
    """The gang this process's hello names, from `environ` and the gang option
    `setting` ("auto", "off" or a job key); None when it is no rank of a job
    with several ranks on this node, or the job has no key."""
    setting = setting.strip()
    if setting == "off":
        return None
    size = _count(environ.get("LOCAL_WORLD_SIZE"))
    if size is None or size < 2:
        return None
    key = job_key(environ) if setting in ("", "auto") else setting
    if not key:
        return None
    rank = _count(environ.get("LOCAL_RANK"))
    return Gang(key, size, rank if rank is not None and rank < size else -1)


def unnamed_job_warning(environ: Mapping[str, str], setting: str = "auto") -> str:
    """What to tell a rank of a job with several ranks on this node whose
    environment names no job key (gang_of is None): its ranks are granted one by
    one, which two such jobs sharing devices can deadlock. "" otherwise."""
    size = _count(environ.get("LOCAL_WORLD_SIZE"))
    if setting.strip() in ("off",) or size is None or size < 2 or gang_of(environ, setting) is not None:
        return ""
    return (f"acb: this process is one of {size} ranks of a job on this node (LOCAL_WORLD_SIZE={size}), but "
            "neither TORCHELASTIC_RUN_ID nor MASTER_ADDR and MASTER_PORT name the job, so its ranks are granted "
            "their devices one by one; set ACB_GANG to a key of the job (the same in every rank) to have them "
            "granted together, or ACB_GANG=off to silence this")
