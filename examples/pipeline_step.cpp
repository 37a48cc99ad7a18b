// pipeline_step: libdiffcl embedded as one step of a C++ imaging pipeline.
//
//   pipeline_step MODEL.safetensors [IMAGE.nii[.gz]]
//
// A pipeline hands each step a volume in its own memory (here a std::vector<float>) and
// expects a label map back. The segmentation step below owns its libdiffcl objects through
// std::unique_ptr, lends the caller's buffer to the library without copying
// (diffcl_tensor_wrap), turns libdiffcl errors into C++ exceptions carrying the library's
// message, and reports progress to the pipeline. Without IMAGE the pipeline's "acquisition"
// stage makes a phantom case (of the model's dimensionality) and the report stage scores
// the step's output against the phantom's reference label.
//
// Build against an installed libdiffcl (C++17; the headers are extern "C"):
//   c++ -std=c++17 pipeline_step.cpp $(pkg-config --cflags --libs diffcl) -o pipeline_step
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffcl/diffcl.h>

namespace dc {

// A failed libdiffcl call, with diffcl_status_string and diffcl_last_error in what().
struct Error : std::runtime_error {
    diffcl_status status;
    Error(diffcl_status s, const std::string &call)
        : std::runtime_error(call + ": " + diffcl_status_string(s) + ": " + diffcl_last_error()),
          status(s) {}
};

inline void check(diffcl_status s, const char *call)
{
    if (s != DIFFCL_OK) throw Error(s, call);
}

// unique_ptr deleters calling the matching _free function.
template <class T, void (*Free)(T *)> struct Deleter {
    void operator()(T *p) const { Free(p); }
};
using Context = std::unique_ptr<diffcl_context, Deleter<diffcl_context, diffcl_context_free>>;
using Module = std::unique_ptr<diffcl_module, Deleter<diffcl_module, diffcl_module_free>>;
using Tensor = std::unique_ptr<diffcl_tensor, Deleter<diffcl_tensor, diffcl_tensor_free>>;

}  // namespace dc

// What flows between pipeline stages: a single-channel image and its spatial shape.
struct Volume {
    std::vector<int64_t> shape;  // (D, H, W) or (H, W)
    std::vector<float> voxels;   // row-major
};
struct LabelMap {
    std::vector<int64_t> shape;
    std::vector<uint8_t> labels;
};

// The pipeline step: load a model once, segment every volume handed to it.
class SegmentationStep {
public:
    using Progress = std::function<void(int64_t done, int64_t total)>;

    SegmentationStep(const std::string &model_path, int threads, Progress progress)
        : progress_(std::move(progress))
    {
        diffcl_context_options opts = DIFFCL_CONTEXT_OPTIONS_INIT;
        opts.n_threads = threads;
        opts.log_level = DIFFCL_LOG_WARN;
        diffcl_context *ctx = nullptr;
        dc::check(diffcl_context_create(&opts, &ctx), "diffcl_context_create");
        ctx_.reset(ctx);
        dc::check(diffcl_context_set_progress(ctx_.get(), &SegmentationStep::on_progress, this),
                  "diffcl_context_set_progress");
        diffcl_module *m = nullptr;
        dc::check(diffcl_model_load(ctx_.get(), model_path.c_str(), &m), "diffcl_model_load");
        model_.reset(m);
        diffcl_module_train(model_.get(), 0);
        diffcl_vnet_options v = DIFFCL_VNET_OPTIONS_INIT;
        dc::check(diffcl_vnet_get_options(model_.get(), &v), "diffcl_vnet_get_options");
        dims_ = v.dims;
    }

    int dims() const { return dims_; }
    diffcl_context *context() const { return ctx_.get(); }

    LabelMap operator()(Volume &in)
    {
        if (static_cast<int>(in.shape.size()) != dims_)
            throw std::invalid_argument("segmentation step: a " + std::to_string(dims_) +
                                        "-D model got a " + std::to_string(in.shape.size()) +
                                        "-D volume");
        // Lend the pipeline's buffer as a [1, (D), H, W] tensor: no copy, no deleter (the
        // vector outlives the tensor, which is released before this function returns).
        std::vector<int64_t> shape{1};
        shape.insert(shape.end(), in.shape.begin(), in.shape.end());
        diffcl_tensor *t = nullptr;
        dc::check(diffcl_tensor_wrap(ctx_.get(), DIFFCL_F32, static_cast<int>(shape.size()),
                                     shape.data(), nullptr, in.voxels.data(), nullptr, nullptr,
                                     &t),
                  "diffcl_tensor_wrap");
        dc::Tensor image(t);

        diffcl_sliding_window_options sw = DIFFCL_SLIDING_WINDOW_OPTIONS_INIT;
        if (dims_ == 2) {
            sw.patch[0] = sw.stride[0] = 1;
            sw.patch[1] = sw.patch[2] = 64;
            sw.stride[1] = sw.stride[2] = 32;
        } else {  // a small 3-D window; real data would use the training patch
            for (int i = 0; i < 3; i++) sw.patch[i] = 32, sw.stride[i] = 16;
        }
        diffcl_tensor *lab = nullptr;
        dc::check(diffcl_segment(model_.get(), image.get(), &sw, &lab, nullptr), "diffcl_segment");
        dc::Tensor label(lab);

        LabelMap out;
        out.shape = in.shape;
        out.labels.resize(static_cast<size_t>(diffcl_tensor_numel(label.get())));
        dc::check(diffcl_tensor_copy_to(label.get(), out.labels.data(), out.labels.size()),
                  "diffcl_tensor_copy_to");
        return out;
    }

private:
    static int on_progress(const char *, int64_t done, int64_t total, const char *, void *user)
    {
        auto *self = static_cast<SegmentationStep *>(user);
        if (self->progress_) self->progress_(done, total);
        return 0;
    }

    Progress progress_;
    dc::Context ctx_;
    dc::Module model_;
    int dims_ = 3;
};

// Acquisition stage without a file: a phantom case of the given dimensionality.
static Volume phantom_volume(diffcl_context *ctx, int dims, LabelMap &reference)
{
    diffcl_phantom_options p = DIFFCL_PHANTOM_OPTIONS_INIT;
    p.ndim = dims;
    p.seed = 2024;
    diffcl_tensor *img = nullptr, *lab = nullptr;
    dc::check(diffcl_phantom_case(ctx, &p, 7, &img, &lab), "diffcl_phantom_case");
    dc::Tensor image(img), label(lab);
    Volume v;
    int64_t shape[DIFFCL_MAX_DIMS];
    int n = diffcl_tensor_shape(image.get(), shape);
    v.shape.assign(shape + 1, shape + n);  // drop the channel axis
    v.voxels.resize(static_cast<size_t>(diffcl_tensor_numel(image.get())));
    dc::check(diffcl_tensor_copy_to(image.get(), v.voxels.data(), v.voxels.size() * sizeof(float)),
              "diffcl_tensor_copy_to");
    reference.shape = v.shape;
    reference.labels.resize(static_cast<size_t>(diffcl_tensor_numel(label.get())));
    dc::check(diffcl_tensor_copy_to(label.get(), reference.labels.data(), reference.labels.size()),
              "diffcl_tensor_copy_to");
    return v;
}

// Acquisition stage from a NIfTI file: (x, y[, z]) as nibabel shows it, z-scored.
static Volume nifti_volume(diffcl_context *ctx, const char *path)
{
    diffcl_tensor *raw = nullptr, *norm = nullptr, *c1 = nullptr;
    dc::check(diffcl_nifti_read(ctx, path, DIFFCL_NIFTI_IMAGE, &raw, nullptr), "diffcl_nifti_read");
    dc::Tensor r(raw);
    dc::check(diffcl_tensor_unsqueeze(r.get(), 0, &c1), "diffcl_tensor_unsqueeze");
    dc::Tensor with_channel(c1);
    dc::check(diffcl_normalize_zscore(with_channel.get(), 0, &norm), "diffcl_normalize_zscore");
    dc::Tensor n(norm);
    Volume v;
    int64_t shape[DIFFCL_MAX_DIMS];
    int nd = diffcl_tensor_shape(n.get(), shape);
    v.shape.assign(shape + 1, shape + nd);
    v.voxels.resize(static_cast<size_t>(diffcl_tensor_numel(n.get())));
    dc::check(diffcl_tensor_copy_to(n.get(), v.voxels.data(), v.voxels.size() * sizeof(float)),
              "diffcl_tensor_copy_to");
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: %s MODEL.safetensors [IMAGE.nii[.gz]]\n", argv[0]);
        return 2;
    }
    try {
        int64_t last_report = -1;
        SegmentationStep step(argv[1], 0, [&](int64_t done, int64_t total) {
            int64_t pct = 100 * done / (total ? total : 1);
            if (pct / 25 != last_report / 25 || done == total) {
                std::printf("  segmentation %3lld%%\n", static_cast<long long>(pct));
                last_report = pct;
            }
        });

        LabelMap reference;
        Volume volume = argc > 2 ? nifti_volume(step.context(), argv[2])
                                 : phantom_volume(step.context(), step.dims(), reference);
        std::printf("acquired a %zu-D volume of %zu voxels\n", volume.shape.size(),
                    volume.voxels.size());

        auto t0 = std::chrono::steady_clock::now();
        LabelMap result = step(volume);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        size_t fg = 0;
        for (uint8_t l : result.labels) fg += l != 0;
        std::printf("segmented in %.2f s: %zu foreground voxels\n", secs, fg);
        if (!reference.labels.empty()) {
            // The report stage uses the library's metrics on the pipeline's own buffers.
            diffcl_tensor *p = nullptr, *r = nullptr;
            dc::check(diffcl_tensor_wrap(step.context(), DIFFCL_U8,
                                         static_cast<int>(result.shape.size()),
                                         result.shape.data(), nullptr, result.labels.data(),
                                         nullptr, nullptr, &p), "diffcl_tensor_wrap");
            dc::Tensor pt(p);
            dc::check(diffcl_tensor_wrap(step.context(), DIFFCL_U8,
                                         static_cast<int>(reference.shape.size()),
                                         reference.shape.data(), nullptr,
                                         reference.labels.data(), nullptr, nullptr, &r),
                      "diffcl_tensor_wrap");
            dc::Tensor rt(r);
            diffcl_seg_metrics m;
            dc::check(diffcl_metrics_binary(pt.get(), rt.get(), nullptr, &m),
                      "diffcl_metrics_binary");
            std::printf("dice against the phantom's reference: %.4f (hd95 %.2f)\n", m.dice,
                        m.hd95);
        }
    } catch (const dc::Error &e) {
        std::fprintf(stderr, "pipeline_step: %s\n", e.what());
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "pipeline_step: %s\n", e.what());
        return 1;
    }
    return 0;
}
