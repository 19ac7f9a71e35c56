"""Import STAND-INS for vendor plugins that cannot exist on a CPU-only test machine.

`torch_npu` (Huawei Ascend), `torch_mlu` (Cambricon) and `torch_musa` (Moore Threads)
need their cards and drivers. These packages are NOT those plugins: each only registers
a `torch.<type>` module with the query functions jupyter_split calls (`is_available`,
`device_count`, `is_bf16_supported`), driven by environment variables, so that detection,
visible-device handling and dtype choice are tested. No tensor ever lives on them.

    STANDIN_<TYPE>_CARDS   cards on the pretend machine (default 0: plugin installed, no card)
    STANDIN_<TYPE>_BF16    "0" for a card without bf16 (e.g. Ascend 910A), default "1"
    STANDIN_<TYPE>_BROKEN  set to make the import fail as a plugin with a missing driver does
"""
