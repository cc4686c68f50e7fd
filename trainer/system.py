"""System metrics of a training process, sampled every SYSTEM_SECONDS by whatever trains it (a
worker's sink, or the client in a script or a queued job): CPU and memory of the process
(psutil) and, with a CUDA device, GPU utilisation and memory (NVML, nvidia-ml-py, when it is
installed). They become the run's `system/...` series and its system panel."""

from __future__ import annotations

import logging
import os
from typing import Any

import psutil

log = logging.getLogger(__name__)

SYSTEM_SECONDS = 5.0


class SystemSampler:
    def __init__(self, device: str = "cpu"):
        self.process = psutil.Process(os.getpid())
        self.process.cpu_percent(None)  # the first call only starts the measurement
        self.gpu: Any = None
        if device.startswith("cuda"):
            try:
                import pynvml  # noqa: PLC0415 - only where there is a GPU to ask about

                pynvml.nvmlInit()
                index = int(device.split(":")[1]) if ":" in device else 0
                visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
                if visible and visible.split(",")[index].strip().isdigit():
                    index = int(visible.split(",")[index])  # NVML counts every GPU of the host
                self.gpu = pynvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as error:  # no driver, a device NVML does not know: CPU metrics only, never a failed run
                log.info("no GPU metrics: %s", error)

    def sample(self) -> dict[str, float]:
        """Key -> value, for the run's series (`system/...`)."""
        values = {
            "system/cpu_percent": float(self.process.cpu_percent(None)),
            "system/memory_mb": self.process.memory_info().rss / 2**20,
        }
        if self.gpu is not None:
            import pynvml  # noqa: PLC0415

            utilisation = pynvml.nvmlDeviceGetUtilizationRates(self.gpu)
            memory = pynvml.nvmlDeviceGetMemoryInfo(self.gpu)
            values["system/gpu_percent"] = float(utilisation.gpu)
            values["system/gpu_memory_mb"] = memory.used / 2**20
        return values
