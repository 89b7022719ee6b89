// The operators that get an unboxed kernel on the hook's key (unboxed_ops.cpp):
// one X-macro entry per at::_ops struct, the op's name with its overload
// (aten::add_.Tensor is add__Tensor). Every other operator goes through the
// boxed fallback, which does the same work at the cost of torch boxing and
// unboxing its arguments (docs/architecture.md, "Op hook").
//
// Chosen by counting the outermost operators that reach the hook in the
// end-to-end jobs (MLP and CNN training with SGD, batch inference) and in a
// transformer trained with AdamW (foreach and not): element-wise arithmetic,
// the optimizers' in-place updates, matrix products, views, allocation and
// copies, normalisation, convolution, losses and their backward kernels.
// Adding an entry costs compile time only; its signature comes from torch's
// headers, so an entry cannot mismatch the operator it registers for.
#pragma once

#include <ATen/ops/_foreach_add_ops.h>
#include <ATen/ops/_foreach_addcdiv_ops.h>
#include <ATen/ops/_foreach_addcmul_ops.h>
#include <ATen/ops/_foreach_div_ops.h>
#include <ATen/ops/_foreach_lerp_ops.h>
#include <ATen/ops/_foreach_mul_ops.h>
#include <ATen/ops/_foreach_sqrt_ops.h>
#include <ATen/ops/_foreach_zero_ops.h>
#include <ATen/ops/_has_compatible_shallow_copy_type_ops.h>
#include <ATen/ops/_local_scalar_dense_ops.h>
#include <ATen/ops/_log_softmax_backward_data_ops.h>
#include <ATen/ops/_log_softmax_ops.h>
#include <ATen/ops/_softmax_backward_data_ops.h>
#include <ATen/ops/_softmax_ops.h>
#include <ATen/ops/_to_copy_ops.h>
#include <ATen/ops/_unsafe_view_ops.h>
#include <ATen/ops/add_ops.h>
#include <ATen/ops/addcdiv_ops.h>
#include <ATen/ops/addcmul_ops.h>
#include <ATen/ops/addmm_ops.h>
#include <ATen/ops/alias_ops.h>
#include <ATen/ops/argmax_ops.h>
#include <ATen/ops/as_strided_ops.h>
#include <ATen/ops/baddbmm_ops.h>
#include <ATen/ops/batch_norm_ops.h>
#include <ATen/ops/bmm_ops.h>
#include <ATen/ops/cat_ops.h>
#include <ATen/ops/clone_ops.h>
#include <ATen/ops/contiguous_ops.h>
#include <ATen/ops/conv2d_ops.h>
#include <ATen/ops/convolution_backward_ops.h>
#include <ATen/ops/convolution_ops.h>
#include <ATen/ops/copy_ops.h>
#include <ATen/ops/cross_entropy_loss_ops.h>
#include <ATen/ops/detach_ops.h>
#include <ATen/ops/div_ops.h>
#include <ATen/ops/dropout_ops.h>
#include <ATen/ops/embedding_backward_ops.h>
#include <ATen/ops/embedding_ops.h>
#include <ATen/ops/empty_like_ops.h>
#include <ATen/ops/empty_ops.h>
#include <ATen/ops/empty_strided_ops.h>
#include <ATen/ops/exp_ops.h>
#include <ATen/ops/expand_ops.h>
#include <ATen/ops/fill_ops.h>
#include <ATen/ops/flatten_ops.h>
#include <ATen/ops/gelu_backward_ops.h>
#include <ATen/ops/gelu_ops.h>
#include <ATen/ops/index_select_ops.h>
#include <ATen/ops/item_ops.h>
#include <ATen/ops/layer_norm_ops.h>
#include <ATen/ops/lerp_ops.h>
#include <ATen/ops/lift_fresh_ops.h>
#include <ATen/ops/linear_ops.h>
#include <ATen/ops/log_softmax_ops.h>
#include <ATen/ops/matmul_ops.h>
#include <ATen/ops/max_pool2d_ops.h>
#include <ATen/ops/max_pool2d_with_indices_backward_ops.h>
#include <ATen/ops/mean_ops.h>
#include <ATen/ops/mm_ops.h>
#include <ATen/ops/mul_ops.h>
#include <ATen/ops/native_batch_norm_ops.h>
#include <ATen/ops/native_layer_norm_backward_ops.h>
#include <ATen/ops/native_layer_norm_ops.h>
#include <ATen/ops/neg_ops.h>
#include <ATen/ops/nll_loss_backward_ops.h>
#include <ATen/ops/normal_ops.h>
#include <ATen/ops/ones_like_ops.h>
#include <ATen/ops/permute_ops.h>
#include <ATen/ops/pow_ops.h>
#include <ATen/ops/randint_ops.h>
#include <ATen/ops/randn_ops.h>
#include <ATen/ops/relu_ops.h>
#include <ATen/ops/reshape_ops.h>
#include <ATen/ops/rsqrt_ops.h>
#include <ATen/ops/scaled_dot_product_attention_ops.h>
#include <ATen/ops/select_backward_ops.h>
#include <ATen/ops/select_ops.h>
#include <ATen/ops/sigmoid_ops.h>
#include <ATen/ops/silu_backward_ops.h>
#include <ATen/ops/silu_ops.h>
#include <ATen/ops/slice_ops.h>
#include <ATen/ops/softmax_ops.h>
#include <ATen/ops/split_ops.h>
#include <ATen/ops/sqrt_ops.h>
#include <ATen/ops/squeeze_ops.h>
#include <ATen/ops/stack_ops.h>
#include <ATen/ops/sub_ops.h>
#include <ATen/ops/sum_ops.h>
#include <ATen/ops/t_ops.h>
#include <ATen/ops/tanh_ops.h>
#include <ATen/ops/threshold_backward_ops.h>
#include <ATen/ops/to_ops.h>
#include <ATen/ops/transpose_ops.h>
#include <ATen/ops/unflatten_ops.h>
#include <ATen/ops/uniform_ops.h>
#include <ATen/ops/unsqueeze_ops.h>
#include <ATen/ops/view_ops.h>
#include <ATen/ops/where_ops.h>
#include <ATen/ops/zero_ops.h>
#include <ATen/ops/zeros_like_ops.h>
#include <ATen/ops/zeros_ops.h>

// clang-format off
#define ACB_UNBOXED_OPS(X)                                                                    \
  /* element-wise arithmetic and the optimizers' in-place updates */                         \
  X(add_Tensor) X(add__Tensor) X(add_Scalar) X(add__Scalar) X(sub_Tensor) X(sub__Tensor)      \
  X(mul_Tensor) X(mul__Tensor) X(mul_Scalar) X(mul__Scalar) X(div_Tensor) X(div__Tensor)      \
  X(div_Scalar) X(div__Scalar) X(addcmul_) X(addcdiv_) X(lerp__Scalar) X(sqrt) X(rsqrt)       \
  X(neg) X(exp) X(pow_Tensor_Scalar) X(where_self)                                            \
  X(_foreach_add__Scalar) X(_foreach_add__List) X(_foreach_add__Tensor)                       \
  X(_foreach_mul__Scalar) X(_foreach_mul__List) X(_foreach_addcmul__Scalar)                   \
  X(_foreach_addcdiv__Scalar) X(_foreach_addcdiv__ScalarList) X(_foreach_lerp__Scalar)        \
  X(_foreach_div__ScalarList) X(_foreach_sqrt) X(_foreach_zero_)                              \
  /* activations, softmax */                                                                 \
  X(relu) X(relu_) X(gelu) X(gelu_backward) X(silu) X(silu_backward) X(sigmoid) X(tanh)       \
  X(threshold_backward) X(dropout) X(softmax_int) X(log_softmax_int) X(_softmax)              \
  X(_log_softmax) X(_softmax_backward_data) X(_log_softmax_backward_data)                     \
  /* matrix products */                                                                      \
  X(mm) X(addmm) X(bmm) X(baddbmm) X(matmul) X(linear) X(scaled_dot_product_attention)        \
  /* reductions and scalars */                                                               \
  X(sum) X(sum_dim_IntList) X(mean_dim) X(argmax) X(item) X(_local_scalar_dense)              \
  /* views and shapes */                                                                     \
  X(view) X(reshape) X(_unsafe_view) X(t) X(transpose_int) X(permute) X(unsqueeze)            \
  X(squeeze_dim) X(expand) X(select_int) X(slice_Tensor) X(contiguous) X(detach) X(detach_)   \
  X(alias) X(as_strided) X(unflatten_int) X(flatten_using_ints) X(split_Tensor)               \
  X(_has_compatible_shallow_copy_type)                                                        \
  /* allocation, initialisation, copies */                                                   \
  X(empty_memory_format) X(empty_strided) X(empty_like) X(zeros) X(zeros_like) X(ones_like)   \
  X(zero_) X(fill__Scalar) X(copy_) X(clone) X(to_device) X(to_dtype) X(to_dtype_layout)      \
  X(_to_copy) X(lift_fresh) X(cat) X(stack) X(index_select) X(uniform_) X(normal_) X(randn)   \
  X(randint_low)                                                                              \
  /* layers, losses and their backward kernels */                                            \
  X(embedding) X(embedding_backward) X(layer_norm) X(native_layer_norm)                       \
  X(native_layer_norm_backward) X(batch_norm) X(native_batch_norm) X(conv2d) X(convolution)   \
  X(convolution_backward) X(max_pool2d) X(max_pool2d_with_indices_backward)                   \
  X(cross_entropy_loss) X(nll_loss_backward) X(select_backward)
// clang-format on
