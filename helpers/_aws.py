"""boto3 sessions: every AWS-facing function of the kit takes ``session=None`` and resolves it here."""

from __future__ import annotations

from helpers.kinds import InputError


def session(session=None):
    """A boto3 Session: the given one, one wrapping a botocore session, or boto3's default session."""
    import boto3
    import botocore.session

    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        return boto3.DEFAULT_SESSION
    if isinstance(session, boto3.session.Session):
        return session
    if isinstance(session, botocore.session.Session):
        return boto3.session.Session(botocore_session=session)
    raise TypeError(f"session must be a boto3 or botocore Session (or None), not {type(session).__name__}")


def region(boto_session, region: str | None) -> str:
    """``region`` or the session's region; a clear error when there is neither."""
    region = region or boto_session.region_name
    if not region:
        raise InputError("no AWS region: pass region='ap-northeast-2' (say) or set AWS_DEFAULT_REGION")
    return region
