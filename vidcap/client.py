"""The Python client library of the vidcap gRPC service (proto/vidcap/v1/vidcap.proto).

    with VidcapClient("127.0.0.1:50051") as client:
        print(client.caption_image(open("photo.jpg", "rb").read()).caption)
        for response in client.analyze_file("video.mp4", every_n_seconds=1.0):
            ...

Used by the command-line client (client/vidcap_client.py) and the web UI (vidcap.ui).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from vidcap.v1 import vidcap_pb2 as pb
from vidcap.v1 import vidcap_pb2_grpc as pb_grpc

CHUNK_BYTES = 1024 * 1024


class VidcapClient:
    """`with VidcapClient("127.0.0.1:50051") as client: client.caption_image(data)`"""

    def __init__(self, address: str = "127.0.0.1:50051", timeout: float | None = None, api_key: str | None = None,
                 tls_ca: str | Path | bytes | None = None):
        """api_key: sent as `authorization: Bearer KEY` metadata (a server bound beyond loopback wants one).
        tls_ca: connect over TLS, trusting this CA certificate (a PEM file or its bytes; b"" trusts the system's
        CAs)."""
        options = [("grpc.max_send_message_length", 64 * 1024**2)]
        if tls_ca is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            root = Path(tls_ca).read_bytes() if isinstance(tls_ca, (str, Path)) else (tls_ca or None)
            self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root), options=options)
        self.stub = pb_grpc.VidcapStub(self.channel)
        self.timeout = timeout
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else None

    def __enter__(self) -> "VidcapClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def caption_image(self, image: bytes, beam: int = 0, embeddings: bool = False, feature: bool = False,
                      attention: bool = False) -> pb.CaptionImageResponse:
        request = pb.CaptionImageRequest(image=image, beam=beam, with_embeddings=embeddings, with_feature=feature,
                                         with_attention=attention)
        return self.stub.CaptionImage(request, timeout=self.timeout, metadata=self.metadata)

    def analyze_file(self, path: str | Path, **params) -> Iterator[pb.AnalyzeVideoResponse]:
        """Upload a local video in chunks and stream the analysis back."""
        return self.stub.AnalyzeVideoUpload(_chunks(path, params), timeout=self.timeout, metadata=self.metadata)

    def analyze_bytes(self, video: bytes, filename: str = "", **params) -> Iterator[pb.AnalyzeVideoResponse]:
        request = pb.AnalyzeVideoRequest(video=video, filename=filename, params=pb.AnalysisParams(**params))
        return self.stub.AnalyzeVideo(request, timeout=self.timeout, metadata=self.metadata)

    def describe_model(self) -> pb.ModelInfo:
        """The model the server captions with: its name and card."""
        return self.stub.DescribeModel(pb.DescribeModelRequest(), timeout=self.timeout, metadata=self.metadata)

    def describe_service(self) -> pb.ServiceInfo:
        """The live sources the server opens, its library (how many videos) and whether it runs jobs."""
        return self.stub.DescribeService(pb.DescribeServiceRequest(), timeout=self.timeout, metadata=self.metadata)

    def search(self, query: str, top: int = 0) -> pb.SearchResponse:
        """The server's library: caption stretches matching the query, best first."""
        return self.stub.Search(pb.SearchRequest(query=query, top=top), timeout=self.timeout, metadata=self.metadata)

    # ---- jobs: analyses that run on the server without this connection, kept there ------------------------------

    def submit_job_file(self, path: str | Path, add_to_library: bool = False, **params) -> pb.Job:
        """Upload a local video in chunks as a job; answered with the queued job as soon as it is uploaded.
        add_to_library: once done, the video joins the server's library (a copy is kept there)."""
        return self.stub.SubmitJobUpload(_chunks(path, params, add_to_library), timeout=self.timeout,
                                         metadata=self.metadata)

    def submit_job_path(self, path: str, add_to_library: bool = False, **params) -> pb.Job:
        """A video in the server's media folder as a job."""
        request = pb.SubmitJobRequest(path=path, params=pb.AnalysisParams(**params), add_to_library=add_to_library)
        return self.stub.SubmitJob(request, timeout=self.timeout, metadata=self.metadata)

    def job(self, job_id: str) -> pb.Job:
        return self.stub.GetJob(pb.JobRequest(id=job_id), timeout=self.timeout, metadata=self.metadata)

    def jobs(self, state: str = "", limit: int = 0) -> list[pb.Job]:
        request = pb.ListJobsRequest(state=state, limit=limit)
        return list(self.stub.ListJobs(request, timeout=self.timeout, metadata=self.metadata).jobs)

    def cancel_job(self, job_id: str) -> pb.Job:
        return self.stub.CancelJob(pb.JobRequest(id=job_id), timeout=self.timeout, metadata=self.metadata)

    def watch_job(self, job_id: str) -> Iterator[pb.JobEvent]:
        """Progress, frames and moments from the first, then a Summary once the job has ended."""
        return self.stub.WatchJob(pb.JobRequest(id=job_id), timeout=self.timeout, metadata=self.metadata)

    def export_job(self, job_id: str, format: str) -> pb.ExportJobResponse:
        """vtt, srt, chapters (FFmpeg's FFMETADATA), chapters-vtt or chapter-list."""
        return self.stub.ExportJob(pb.ExportJobRequest(id=job_id, format=format), timeout=self.timeout,
                                   metadata=self.metadata)

    def analyze_live(self, source: str, **params) -> Iterator[pb.AnalyzeVideoResponse]:
        """A live source the server opens (rtsp://, udp://, http(s)://, /dev/videoN; only where the server allows it):
        frames, moments and notices until it ends or the call is cancelled."""
        request = pb.AnalyzeVideoRequest(live_source=source, params=pb.AnalysisParams(**params))
        return self.stub.AnalyzeVideo(request, timeout=self.timeout, metadata=self.metadata)

    def analyze_path(self, path: str, **params) -> Iterator[pb.AnalyzeVideoResponse]:
        """A video already in the server's media folder: nothing is uploaded."""
        return self.stub.AnalyzeVideo(pb.AnalyzeVideoRequest(path=path, params=pb.AnalysisParams(**params)),
                                      timeout=self.timeout, metadata=self.metadata)


def _chunks(path: str | Path, params: dict, add_to_library: bool = False) -> Iterator[pb.VideoChunk]:
    """A local file as upload chunks: the parameters and the file name ride on the first."""
    path = Path(path)
    with path.open("rb") as f:
        yield pb.VideoChunk(params=pb.AnalysisParams(**params), filename=path.name, data=f.read(CHUNK_BYTES),
                            add_to_library=add_to_library)
        while data := f.read(CHUNK_BYTES):
            yield pb.VideoChunk(data=data)
