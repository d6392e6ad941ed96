"""Measures, with PyTorch on any CUDA GPU, the memory peak of vLLM's
profiling sampler pass per request and vocabulary entry, and what
torch.cuda.mem_get_info reports for the card.

The ops follow vLLM's sampler as read (written here, not copied):
gpu_model_runner._dummy_sampler_run asks for temperature 0.5, top_k =
vocab-1, top_p = 0.9; Sampler.forward casts the bf16 logits to float32 and
applies the temperature in place; topk_topp_sampler.apply_top_k_top_p_pytorch
sorts, masks top-k and top-p (softmax, cumsum in place) and scatters back;
forward_native then takes a float32 softmax and samples with exponential
noise. The bf16 logits stay referenced by the caller throughout.

Usage: python measure_sampler_peak.py  (prints one JSON line)

Result on an NVIDIA H200, PyTorch 2.11.0+cu130 (2026-11-30): 38.0 B per
entry for 1 and for 128-512 requests, 50.2-50.8 B for 8-96 requests, at both
vocabularies; torch.sort alone peaks at 32 / 44-45 B. mem_get_info total
139.80 GiB, 139.19 GiB free after the CUDA context.
"""
import json

import torch


def sampler_pass(logits_bf16, k, p, temp):
    logits = logits_bf16.to(torch.float32)
    logits.div_(temp.unsqueeze(1))
    # apply_top_k_top_p (PyTorch path)
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    top_k_mask = logits_sort.size(1) - k.to(torch.long)
    top_k_mask = logits_sort.gather(1, top_k_mask.unsqueeze(dim=1))
    top_k_mask = logits_sort < top_k_mask
    logits_sort.masked_fill_(top_k_mask, -float("inf"))
    probs_sort = logits_sort.softmax(dim=-1)
    probs_sum = torch.cumsum(probs_sort, dim=-1, out=probs_sort)
    top_p_mask = probs_sum <= 1 - p.unsqueeze(dim=1)
    top_p_mask[:, -1] = False
    logits_sort.masked_fill_(top_p_mask, -float("inf"))
    logits = logits.scatter_(dim=-1, index=logits_idx, src=logits_sort)
    del logits_sort, logits_idx, top_k_mask, probs_sort, probs_sum, top_p_mask
    # forward_native: softmax and exponential-noise sampling
    probs = logits.softmax(dim=-1, dtype=torch.float32)
    q = torch.empty_like(probs).exponential_()
    return probs.div_(q).argmax(dim=-1)


def main():
    dev = torch.device("cuda:0")
    free0, total = torch.cuda.mem_get_info(dev)
    torch.zeros(1, device=dev)  # create the context
    torch.cuda.synchronize()
    free_ctx, _ = torch.cuda.mem_get_info(dev)
    out = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__,
           "mem_total_gib": total / 2**30, "mem_free_after_context_gib": free_ctx / 2**30, "points": []}
    for vocab, seqs in [(v, s) for v in (151936, 128256) for s in (1, 8, 32, 64, 96, 128, 160, 192, 224, 256, 512)]:
        logits = torch.randn(seqs, vocab, device=dev, dtype=torch.bfloat16)
        k = torch.full((seqs,), vocab - 1, device=dev, dtype=torch.int32)
        p = torch.full((seqs,), 0.9, device=dev)
        temp = torch.full((seqs,), 0.5, device=dev)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev) - logits.numel() * 2  # the bf16 logits count as the pass's
        sampler_pass(logits, k, p, temp)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(dev) - base
        out["points"].append({"vocab": vocab, "seqs": seqs, "peak_bytes": peak, "bytes_per_entry": peak / (seqs * vocab)})
        del logits, k, p, temp
        torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
