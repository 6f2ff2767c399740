// Carrying an SSM layer's state across stateful passes (shared by the SSD and Mamba-2 mixers): the causal
// conv continued from each sequence's last K−1 inputs, and the scan continued from its state.
#pragma once
#include "model/layer.h"

namespace txs {

// y = conv1d+SiLU over each sequence's [tail; new rows of x], as if the whole sequence had been run;
// updates the tails. x, y: [batch·seq, channels] (x may be strided); window, conv_out: scratch buffers.
void conv_cached(Backend& be, const CachedPass& pass, const Tensor& x, const Tensor& w, const Tensor& bias,
                 const Tensor& y, int64_t kernel, DeviceBuffer& window, DeviceBuffer& conv_out);

// The SSD scan over the new rows, continuing each sequence's state: decode (one token per sequence) runs
// the O(1) recurrence, prefill (one sequence) the chunked scan from the carried state.
void scan_cached(Backend& be, const CachedPass& pass, const SsdShape& shape, const Tensor& x, const Tensor& dt,
                 const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& y,
                 DeviceBuffer& final_state);

}  // namespace txs
