"""The head-pose sub-product, one room: the network (model.py), the estimator the face pipeline runs on photos
(estimator.py), its training crops (data.py) and its training (train.py, `pose3dfr train-headpose`). It sits on
floor 1 beside data/ and models/, below inference/: the face detector its crops are boxed with is handed in by
the caller (data.DetectorFactory), so nothing here imports the face pipeline that uses the estimator."""
