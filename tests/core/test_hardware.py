from desktop_ft.core import hardware


def test_detect_works_without_a_gpu() -> None:
    hw = hardware.detect()
    assert hw.cpu_cores >= 1
    assert hw.ram_total_bytes >= hw.ram_available_bytes > 0
    if not hw.gpus:
        assert hw.best_device == "cpu" and hw.bitsandbytes is False
    for gpu in hw.gpus:
        assert gpu.total_bytes >= gpu.free_bytes > 0 and len(gpu.capability) == 2


def test_pretend_gpu() -> None:
    hw = hardware.gpu(24)
    assert hw.best_device == "cuda" and hw.gpus[0].total_bytes == 24 * 1024**3
