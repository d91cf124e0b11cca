"""Object-store filesystems (S3, S3-compatible servers, Google Cloud Storage) with options that
travel to workers.

pyarrow's ``S3FileSystem`` and ``GcsFileSystem`` do the I/O. What distml adds: an endpoint override for
S3-compatible servers (MinIO, Ceph, moto) from ``storage_options`` or ``AWS_ENDPOINT_URL``,
short connect/request timeouts and few retries (a wrong endpoint fails in seconds, not
minutes), and :class:`StorageOptions`, a small picklable value carried inside every
:class:`~distml.data.dataset.PartitionSpec`, so a Dask worker or Spark executor opens the
same filesystem as the driver without depending on its own environment.

Credentials not given here come from the AWS SDK's standard chain on each process
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws``,
instance metadata), or Google's default credentials; ``STORAGE_EMULATOR_HOST`` points
``gs://`` at an emulator, as for Google's own clients. Worker-side: imports only pyarrow
and distml.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from distml.errors import DataError, SpecError

#: URL schemes served by :func:`s3_filesystem` (``s3a``/``s3n`` are Hadoop's names for S3).
S3_SCHEMES = ("s3", "s3a", "s3n")
#: Google Cloud Storage, served by :func:`gcs_filesystem`.
GCS_SCHEMES = ("gs", "gcs")
#: Azure Blob Storage / ADLS Gen2 (``abfs[s]://container@account.dfs.core.windows.net/path``
#: or ``az://container/path``), served by :func:`azure_filesystem`.
AZURE_SCHEMES = ("abfs", "abfss", "az")
OBJECT_SCHEMES = S3_SCHEMES + GCS_SCHEMES + AZURE_SCHEMES
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
#: The driver's first request (is the location there?): one attempt, short timeouts, so a
#: wrong or silent endpoint is reported in seconds; the reads after it get the retries.
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class StorageOptions:
    """How to reach an object store; ``None`` fields fall back to the store's standard chain
    (AWS's, Google's, Azure's default credentials)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    account_name: str | None = None  # Azure: the storage account (else from the URL)
    account_key: str | None = field(default=None, repr=False)  # Azure: a shared key
    anonymous: bool = False

    @classmethod
    def of(cls, value: StorageOptions | dict[str, Any] | None) -> StorageOptions | None:
        """``value`` as options: a dict with the field names (spec ``data.storage_options``)."""
        if value is None or isinstance(value, StorageOptions):
            return value
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise SpecError(
                f"storage_options: unknown key '{unknown[0]}' (known: {', '.join(sorted(names))})"
            )
        return cls(**{k: v for k, v in value.items() if v is not None})


def with_environment(options: StorageOptions | None, uri: str = "s3://") -> StorageOptions:
    """``options`` with unset fields filled from this process's environment (endpoint,
    region, a key pair), so workers started elsewhere reach the same store with the same
    identity. A session token, profile or instance role is not copied: each process then
    resolves its own through the AWS SDK's chain (or Google's default credentials).
    For ``gs://``: the endpoint of ``STORAGE_EMULATOR_HOST``, anonymous as Google's own
    clients are with an emulator."""
    options = options or StorageOptions()
    env = os.environ
    if is_azure(uri):
        key = options.account_key or env.get("AZURE_STORAGE_ACCOUNT_KEY")
        return StorageOptions(
            endpoint_url=options.endpoint_url or env.get("AZURE_STORAGE_BLOB_ENDPOINT"),
            account_name=options.account_name or env.get("AZURE_STORAGE_ACCOUNT_NAME"),
            account_key=None if options.anonymous else key,
            anonymous=options.anonymous,
        )
    if is_gcs(uri):
        emulator = env.get("STORAGE_EMULATOR_HOST")
        return StorageOptions(
            endpoint_url=options.endpoint_url or emulator,
            region=options.region,
            anonymous=options.anonymous or bool(emulator and not options.endpoint_url),
        )
    if options.anonymous:
        return options
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    use_env_keys = (
        not (options.access_key or options.secret_key)
        and key
        and secret
        and not env.get("AWS_SESSION_TOKEN")
    )
    return StorageOptions(
        endpoint_url=options.endpoint_url
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL"),
        region=options.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        access_key=key if use_env_keys else options.access_key,
        secret_key=secret if use_env_keys else options.secret_key,
    )


#: How a process started for a task (a Keras worker) receives the driver's storage options:
#: in its environment, never in a file beside the data; one entry per kind of store.
OPTIONS_VARIABLE = "DISTML_STORAGE_OPTIONS"


def _store_kind(uri: str) -> str:
    return "azure" if is_azure(uri) else "gcs" if is_gcs(uri) else "s3"


def options_environment(*located: tuple[str, StorageOptions | None]) -> dict[str, str]:
    """The environment entry that hands each ``(url, options)``'s options to a child process
    (empty when none of the URLs is on an object store)."""
    table = {
        _store_kind(url): asdict(options)
        for url, options in located
        if options is not None and is_object_store(url)
    }
    return {OPTIONS_VARIABLE: json.dumps(table)} if table else {}


def options_from_environment(uri: str) -> StorageOptions | None:
    """The options a parent put in this process's environment for ``uri``'s kind of store."""
    text = os.environ.get(OPTIONS_VARIABLE)
    entry = json.loads(text).get(_store_kind(uri)) if text else None
    return StorageOptions(**entry) if entry else None


def is_object_store(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in OBJECT_SCHEMES


def is_gcs(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in GCS_SCHEMES


def is_azure(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in AZURE_SCHEMES


def split_location(uri: str) -> tuple[str, str]:
    """``(bucket or container, key)`` of an object-store URL; Azure's
    ``abfs://container@account.dfs.core.windows.net/key`` names the container before ``@``."""
    parts = urlsplit(uri)
    bucket = parts.netloc.split("@", 1)[0] if is_azure(uri) else parts.netloc
    return bucket, parts.path.strip("/")


def open_location(uri: str, options: StorageOptions | None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` of an ``s3://``, ``gs://`` or ``abfs://`` URL."""
    bucket, key = split_location(uri)
    if not bucket:
        scheme = urlsplit(uri).scheme
        raise DataError(f"{uri}: no bucket in this URL ({scheme}://BUCKET/PREFIX)")
    path = f"{bucket}/{key}".rstrip("/")
    return object_filesystem(uri, options), path


def object_filesystem(
    uri: str, options: StorageOptions | None, probe: bool = False
) -> pafs.FileSystem:
    """The filesystem serving ``uri``'s scheme (S3, Google Cloud Storage or Azure)."""
    if is_gcs(uri):
        return gcs_filesystem(options or StorageOptions(), probe)
    if is_azure(uri):
        account = urlsplit(uri).hostname if "@" in urlsplit(uri).netloc else None
        name = (account or "").split(".")[0]
        fs = azure_filesystem(options or StorageOptions(), name)
        if probe:  # Azure's client has no timeout settings: reach the endpoint first, briefly
            chosen = (options.account_name if options else None) or name
            _reach(uri, endpoint_of(options, uri), chosen or os.environ.get(
                "AZURE_STORAGE_ACCOUNT_NAME", ""))  # fmt: skip
        return fs
    return s3_filesystem(options or StorageOptions(), probe)


#: Environment variables read here (the AWS SDK reads the credential ones itself).
ENV_KEYS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_BLOB_ENDPOINT",
)


def parse_endpoint(endpoint: str, default_scheme: str) -> tuple[str, str]:
    """``(host[:port], scheme)`` of an endpoint given as a URL or a bare ``host:port``."""
    url = urlsplit(endpoint if "://" in endpoint else f"{default_scheme}://{endpoint}")
    if not url.hostname:
        raise DataError(f"{endpoint}: not an endpoint URL (e.g. http://127.0.0.1:9000)")
    return url.netloc, url.scheme or default_scheme


def s3_filesystem(options: StorageOptions, probe: bool = False) -> pafs.S3FileSystem:
    """An S3 filesystem for ``options`` and the environment (cached per process: a worker
    opens one per job, not one per partition); ``probe``: one attempt, short timeouts."""
    return _s3_filesystem(options, tuple(os.environ.get(k) for k in ENV_KEYS), probe)


def endpoint_of(options: StorageOptions | None, uri: str = "s3://") -> str:
    """The endpoint requests go to, for messages (``AWS S3`` or ``Google Cloud Storage``
    when not overridden)."""
    explicit = options.endpoint_url if options else None
    if is_azure(uri):
        return explicit or os.environ.get("AZURE_STORAGE_BLOB_ENDPOINT") or "Azure Storage"
    if is_gcs(uri):
        return explicit or os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"
    return (
        explicit
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "AWS S3"
    )


def probe_location(uri: str, options: StorageOptions | None) -> pafs.FileInfo:
    """What ``uri`` is (file, folder, not found), asked once with short timeouts; a store
    that refuses or cannot be reached is a :class:`DataError` naming the URL."""
    _, path = open_location(uri, options)
    try:
        return object_filesystem(uri, options, probe=True).get_file_info(path)
    except OSError as exc:
        raise DataError(describe_error(uri, exc)) from None


@functools.lru_cache(maxsize=16)
def _s3_filesystem(
    options: StorageOptions, env: tuple[str | None, ...], probe: bool
) -> pafs.S3FileSystem:
    environ = dict(zip(ENV_KEYS, env, strict=True))
    endpoint = options.endpoint_url or environ["AWS_ENDPOINT_URL_S3"] or environ["AWS_ENDPOINT_URL"]
    kwargs: dict[str, Any] = {
        "connect_timeout": PROBE_TIMEOUT_S if probe else CONNECT_TIMEOUT_S,
        "request_timeout": PROBE_TIMEOUT_S if probe else REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(
            max_attempts=1 if probe else MAX_ATTEMPTS
        ),
    }
    if endpoint:
        kwargs["endpoint_override"], kwargs["scheme"] = parse_endpoint(endpoint, "https")
    region = options.region or environ["AWS_REGION"] or environ["AWS_DEFAULT_REGION"]
    if region:
        kwargs["region"] = region
    if options.anonymous:
        kwargs["anonymous"] = True
    elif options.access_key or options.secret_key:
        if not (options.access_key and options.secret_key):
            raise SpecError("storage_options: access_key and secret_key go together")
        kwargs["access_key"] = options.access_key
        kwargs["secret_key"] = options.secret_key
    try:
        return pafs.S3FileSystem(**kwargs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{endpoint or 's3'}: cannot set up the S3 client ({exc})") from None


def gcs_filesystem(options: StorageOptions, probe: bool = False) -> pafs.GcsFileSystem:
    """A Google Cloud Storage filesystem (cached per process); ``probe``: a short retry
    budget. Credentials: Google's defaults (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata
    server), or anonymous (public buckets, emulators)."""
    return _gcs_filesystem(options, tuple(os.environ.get(k) for k in ENV_KEYS), probe)


@functools.lru_cache(maxsize=16)
def _gcs_filesystem(
    options: StorageOptions, env: tuple[str | None, ...], probe: bool
) -> pafs.GcsFileSystem:
    from datetime import timedelta

    environ = dict(zip(ENV_KEYS, env, strict=True))
    endpoint = options.endpoint_url or environ["STORAGE_EMULATOR_HOST"]
    limit = PROBE_TIMEOUT_S if probe else REQUEST_TIMEOUT_S
    kwargs: dict[str, Any] = {"retry_time_limit": timedelta(seconds=limit)}
    if endpoint:  # emulators speak http: a bare host:port means http, as for Google's clients
        kwargs["endpoint_override"], kwargs["scheme"] = parse_endpoint(endpoint, "http")
    if options.anonymous:
        kwargs["anonymous"] = True
    try:
        return pafs.GcsFileSystem(**kwargs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{endpoint or 'gs'}: cannot set up the GCS client ({exc})") from None


def azure_filesystem(options: StorageOptions, account: str = "") -> pafs.AzureFileSystem:
    """An Azure Blob Storage filesystem (cached per process) for the account in the URL or
    options; a shared key if given, else Azure's default credentials (environment, managed
    identity, the CLI's login)."""
    return _azure_filesystem(options, account, tuple(os.environ.get(k) for k in ENV_KEYS))


@functools.lru_cache(maxsize=16)
def _azure_filesystem(
    options: StorageOptions, account: str, env: tuple[str | None, ...]
) -> pafs.AzureFileSystem:
    environ = dict(zip(ENV_KEYS, env, strict=True))
    name = options.account_name or account or environ["AZURE_STORAGE_ACCOUNT_NAME"]
    if not name:
        raise DataError(
            "azure: no storage account (abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH, "
            "storage_options.account_name or AZURE_STORAGE_ACCOUNT_NAME)"
        )
    kwargs: dict[str, Any] = {"account_name": name}
    key = options.account_key or environ["AZURE_STORAGE_ACCOUNT_KEY"]
    if key and not options.anonymous:
        kwargs["account_key"] = key
    endpoint = options.endpoint_url or environ["AZURE_STORAGE_BLOB_ENDPOINT"]
    if endpoint:  # an emulator (Azurite) or a private endpoint: blob and dfs at one authority
        authority, scheme = parse_endpoint(endpoint, "https")
        for service in ("blob", "dfs"):
            kwargs[f"{service}_storage_authority"] = authority
            kwargs[f"{service}_storage_scheme"] = scheme
    try:
        return pafs.AzureFileSystem(**kwargs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{endpoint or 'azure'}: cannot set up the Azure client ({exc})") from None


def _reach(uri: str, endpoint: str, account: str) -> None:
    """One TCP connection to the blob endpoint within :data:`PROBE_TIMEOUT_S`, else a
    :class:`DataError` naming ``uri`` (the SDK's own retries take ten seconds and more)."""
    import socket

    if endpoint == "Azure Storage":  # the public endpoint of the account
        host, port = f"{account}.blob.core.windows.net", 443
    else:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise DataError(
            f"{uri}: cannot reach the object store ({host}:{port}: {exc.strerror or exc})"
        ) from None


def delete_prefix(fs: pafs.FileSystem, prefix: str) -> None:
    """Delete every object under ``prefix`` (one by one: GCS emulators and some S3-compatible
    servers answer 404 to a folder delete when no folder marker exists)."""
    selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File:
            try:
                fs.delete_file(info.path)
            except FileNotFoundError:
                pass
    if isinstance(fs, pafs.AzureFileSystem):
        return  # a flat namespace: nothing is left (its folder delete probes the DFS
        # endpoint, which an emulator lacks, and retries for seconds)
    try:
        fs.delete_dir(prefix)
    except OSError:
        pass  # no folder marker: nothing left to delete


def describe_error(uri: str, exc: BaseException) -> str:
    """One line saying why ``uri`` could not be reached (pyarrow's AWS errors are long)."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if (
        "nosuchbucket" in lowered
        or "bucket does not exist" in lowered
        or ("not found" in lowered and "bucket" in lowered)
    ):
        return f"{uri}: no such bucket"
    if "invalidaccesskeyid" in lowered or "signaturedoesnotmatch" in lowered:
        return f"{uri}: access denied (the access key or secret is not valid for this store)"
    if is_gcs(uri) and "not_found" in lowered and "bucket" in lowered:
        return f"{uri}: no such bucket"
    if "containernotfound" in lowered:
        return f"{uri}: no such container"
    if "authenticationfailed" in lowered or "authorizationfailure" in lowered:
        return f"{uri}: access denied (check the account key or credentials)"
    if any(w in lowered for w in ("permission_denied", "unauthenticated")):
        return f"{uri}: access denied (check the credentials and the bucket's permissions)"
    if any(w in lowered for w in ("accessdenied", "access_denied", "access denied", "forbidden")):
        return f"{uri}: access denied (check the credentials and the bucket's permissions)"
    if any(w in lowered for w in ("curl", "connect", "resolve", "network", "unavailable")):
        return f"{uri}: cannot reach the object store ({text[:160]})"
    return f"{uri}: cannot read ({text[:200]})"


@dataclass(frozen=True)
class Location:
    """A folder on an object store that workers write into: its URL and how to reach it
    (the options travel with the task, so a worker needs nothing from its environment)."""

    url: str
    options: StorageOptions | None = None

    def __str__(self) -> str:
        return self.url


def writable(out_dir: str | Location, relative: str) -> tuple[pafs.FileSystem | None, str]:
    """``(filesystem, path)`` of the file ``relative`` inside ``out_dir`` for a writer:
    ``(None, local path)`` with its folders made, or the object store and its key (an
    object appears whole when its upload completes, so no rename is needed)."""
    if isinstance(out_dir, Location):
        fs, root = open_location(out_dir.url, out_dir.options)
        return fs, f"{root}/{relative}"
    path = os.path.join(out_dir, relative)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return None, path
